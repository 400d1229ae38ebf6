"""The ``ingest-batch`` flow on the Prefect harness: a refused batch ends Failed with its table and changes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from flow_support import latest_artifact, rows_of

from flows.ingest import BatchRejected, ingest_batch
from tasks.data.dataset import load_dataset

pytestmark = pytest.mark.flows


def test_ingest_adds_a_batch_then_refuses_a_conflicting_one(tiny_dataset: Path, tmp_path: Path, monkeypatch):
    root = tmp_path / "root"
    monkeypatch.setenv("PIPELINE_TRAINING_DATA", str(root))  # `into` defaults to the training data setting

    added = ingest_batch(str(rows_of(tiny_dataset, slice(0, 56), tmp_path / "a")))

    assert added.images == 56 and Path(added.path).parent == root
    assert "Added 56 images" in latest_artifact("ingested-batch")

    conflicting = rows_of(tiny_dataset, slice(56, 84), tmp_path / "b")
    frame = pd.read_csv(conflicting / "labels.csv")
    first = pd.read_csv(tiny_dataset / "labels.csv").iloc[0]
    copy = str(shutil.copy(tiny_dataset / first["image"], tmp_path / "copy.png"))
    frame.loc[len(frame)] = {
        "image": copy,
        "vehicle_type": "bus" if first["vehicle_type"] != "bus" else "van",
        "color": first["color"],
    }
    frame.to_csv(conflicting / "labels.csv", index=False)
    before = sorted(p.name for p in root.rglob("*"))

    state = ingest_batch(str(conflicting), return_state=True)

    assert state.is_failed() and "1 problems" in state.message
    with pytest.raises(BatchRejected) as refused:
        state.result()
    assert refused.value.problems["check"].tolist() == ["same_content_same_labels"]
    assert "same_content_same_labels" in latest_artifact("ingest-validation")
    assert sorted(p.name for p in root.rglob("*")) == before
    assert len(load_dataset(root).frame) == 56
