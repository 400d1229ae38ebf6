"""A version trained with other preprocessing than the server applies is refused."""

from __future__ import annotations

import pytest

from serving.model.source import _check_featurizer

pytestmark = pytest.mark.serving


def test_matching_featurizer_is_accepted() -> None:
    _check_featurizer("3", {"featurizer": {"version": "effnet-abc-v2"}}, "effnet-abc-v2")


def test_model_without_featurizer_metadata_is_accepted() -> None:
    _check_featurizer("3", {}, "effnet-abc-v2")


def test_other_preprocessing_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="version 3 was trained with featurizer 'effnet-abc-v1'"):
        _check_featurizer("3", {"featurizer": {"version": "effnet-abc-v1"}}, "effnet-abc-v2")
