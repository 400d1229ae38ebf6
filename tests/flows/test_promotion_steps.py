"""The retrain check and the promotion gate as the flow calls them, on a copy of the registry
holding the trained v1: each rule once, without a training run of its own."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import joblib
import mlflow
import numpy as np
import pandas as pd
import pytest
from flow_support import MODEL
from mlflow import MlflowClient
from prefect.logging import disable_run_logger

from tasks.data.prepare_steps import PreparedData
from tasks.registry.gate import GatePolicy, PromotionDecision
from tasks.registry.promotion_steps import gate_task, unchanged_since_task
from tasks.registry.versions import CHAMPION
from tasks.training.evaluation import CandidateResult
from vehicle_model import featurizer as featurizer_module
from vehicle_model.featurizer import Featurizer

pytestmark = pytest.mark.flows

CHANGED = "changed-preprocessing-for-test"


def _v1_prepared(v1) -> PreparedData:
    """What preparing v1's data returns, from v1's version tags and the copied prepared folder."""
    tags = MlflowClient().get_model_version(MODEL, "1").tags
    manifest = v1.prepared / tags["fingerprint"][:16] / "split-seed0.csv"
    return PreparedData(
        source=str(v1.dataset),
        fingerprint=tags["fingerprint"],
        manifest=manifest,
        features=manifest.with_suffix(".npz"),
        attributes=["vehicle_type", "color"],
        counts=pd.read_csv(manifest)["split"].value_counts().to_dict(),
        featurizer_version=tags["featurizer"],
    )


def _v1_as_winner(v1, folder: Path) -> CandidateResult:
    """v1's own heads, handed to the gate as a training run hands its winner."""
    classifier = mlflow.pyfunc.load_model(f"models:/{MODEL}/1").unwrap_python_model().classifier
    heads = folder / "heads.joblib"
    joblib.dump(dict(classifier.heads), heads)
    return CandidateResult(v1.summary.winner, v1.summary.parent_run_id, str(heads), {})


def _gate(v1, winner: CandidateResult, prepared: PreparedData) -> PromotionDecision:
    policy = GatePolicy(min_images=5)  # the tiny set has ~13 test images
    with disable_run_logger():
        return gate_task.fn(
            MODEL, CHAMPION, winner, v1.summary.test_metrics, prepared, "macro_f1", policy, str(v1.feature_cache)
        )


def test_the_retrain_check_finds_v1_only_for_its_own_snapshot_and_featurizer(trained_v1_copy, monkeypatch):
    prepared = _v1_prepared(trained_v1_copy)

    skip = unchanged_since_task.fn(MODEL, CHAMPION, prepared)

    assert (skip.alias, skip.version, skip.champion_version) == (CHAMPION, "1", "1")
    assert (skip.dataset, skip.images, skip.fingerprint) == (str(trained_v1_copy.dataset), "84", prepared.fingerprint)
    assert unchanged_since_task.fn(MODEL, CHAMPION, replace(prepared, fingerprint="0" * 64)) is None, "new data"
    monkeypatch.setattr(featurizer_module, "PREPROCESSING_VERSION", CHANGED)
    changed = replace(prepared, featurizer_version=Featurizer().version)
    assert unchanged_since_task.fn(MODEL, CHAMPION, changed) is None, "a new featurizer is something new to learn from"


def test_a_model_equal_to_the_champion_gains_nothing_and_is_not_promoted(trained_v1_copy, tmp_path):
    v1 = trained_v1_copy.summary

    decision = _gate(trained_v1_copy, _v1_as_winner(trained_v1_copy, tmp_path), _v1_prepared(trained_v1_copy))

    assert not decision.promote and "below the required" in decision.reason, "an equal model must not be promoted"
    assert decision.champion_version == "1"
    assert decision.champion_score == pytest.approx(v1.test_metrics["test.macro_f1"], abs=1e-9)
    tags = decision.tags()
    test_images = len(mlflow.artifacts.load_dict(f"runs:/{v1.parent_run_id}/training_images.json")["test"])
    assert tags["gate.images"] == str(test_images), "same data: the whole test split is unseen by both"
    assert (float(tags["gate.gain"]), float(tags["gate.ci_low"]), float(tags["gate.ci_high"])) == (0.0, 0.0, 0.0)


def _features_of_another_featurizer(features: Path, out: Path) -> Path:
    """``features`` with each test row replaced by another image's: what v1's heads score on them
    is not v1's own test score."""
    with np.load(features) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["X_test"] = np.roll(arrays["X_test"], 1, axis=0)
    np.savez(out, **arrays)
    return out


def test_a_champion_of_another_featurizer_is_scored_on_its_own_features(trained_v1_copy, tmp_path, monkeypatch):
    v1 = trained_v1_copy.summary
    prepared = _v1_prepared(trained_v1_copy)
    monkeypatch.setattr(featurizer_module, "PREPROCESSING_VERSION", CHANGED)
    changed = replace(
        prepared,
        featurizer_version=Featurizer().version,
        features=_features_of_another_featurizer(prepared.features, tmp_path / "changed.npz"),
    )
    assert changed.featurizer_version != prepared.featurizer_version and changed.featurizer_version.endswith(CHANGED)

    decision = _gate(trained_v1_copy, _v1_as_winner(trained_v1_copy, tmp_path), changed)

    # The champion's features come from the cache of its own featurizer version: the score it
    # had on this very test split when it was trained, whatever this run's features are.
    assert decision.champion_score == pytest.approx(v1.test_metrics["test.macro_f1"], abs=1e-9)
    assert decision.comparison.candidate_score < decision.champion_score, "the candidate saw this run's features"
