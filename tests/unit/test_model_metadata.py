"""The metadata block a version is logged with reads back the same on the gate's side and serving's."""

from __future__ import annotations

import pytest

from serving.model.source import _check_featurizer
from vehicle_model.metadata import (
    CANDIDATE,
    METRICS,
    candidate_of,
    contract_of,
    featurizer_of,
    featurizer_version_of,
    model_metadata,
)

pytestmark = pytest.mark.unit

FEATURIZER = {"backbone": "EfficientNet-Lite0", "version": "effnet-abc-v2", "feature_dim": 1503}


def test_what_registration_writes_the_readers_read() -> None:
    block = model_metadata(
        {"vehicle_type": ("bus", "car"), "color": ["red"]},
        FEATURIZER,
        {CANDIDATE: "linear_svm", METRICS: {"test.macro_f1": 0.9}},
    )

    assert contract_of(block) == {"vehicle_type": ["bus", "car"], "color": ["red"]}
    assert featurizer_of(block) == FEATURIZER and featurizer_version_of(block) == "effnet-abc-v2"
    assert candidate_of(block) == "linear_svm" and block[METRICS] == {"test.macro_f1": 0.9}
    _check_featurizer("3", block, "effnet-abc-v2")
    with pytest.raises(ValueError, match="trained with featurizer 'effnet-abc-v2'"):
        _check_featurizer("3", block, "effnet-abc-v3")


@pytest.mark.parametrize("block", [None, {}, {"featurizer": None}])
def test_a_version_logged_without_metadata_reads_as_unrecorded(block: dict | None) -> None:
    assert contract_of(block) == {}
    assert (featurizer_of(block), featurizer_version_of(block), candidate_of(block)) == (None, None, None)
