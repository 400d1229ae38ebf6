"""The head wrappers share one base and still load from pickles made before it existed."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from vehicle_model.calibration import GreyscaleTempered
from vehicle_model.exposure import OverExposureRouted
from vehicle_model.featurizer import CHROMA_COLUMN, FEATURE_DIM
from vehicle_model.wrapped import WrappedHead, innermost

pytestmark = pytest.mark.unit


def _head() -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.array(["red", "blue", "green"] * 20)
    X = rng.normal(size=(60, FEATURE_DIM))
    X[:, :3] += 3 * (y[:, None] == np.array(["red", "blue", "green"]))
    X[:, CHROMA_COLUMN] = 0.6
    return LogisticRegression().fit(X, y), X


def test_wrappers_answer_with_the_heads_classes_and_their_own_favourite_label() -> None:
    head, X = _head()
    X[:10, CHROMA_COLUMN] = 0.0
    wrapped = GreyscaleTempered(OverExposureRouted(head, head), temperature=4.0)

    assert isinstance(wrapped, WrappedHead) and isinstance(wrapped.head, WrappedHead)
    assert list(wrapped.classes_) == list(head.classes_)
    np.testing.assert_array_equal(wrapped.predict(X), head.classes_[wrapped.predict_proba(X).argmax(axis=1)])
    assert innermost(wrapped) is head and innermost(head) is head


# The attributes a pickle made before the base existed carries, given the fitted head.
OLD_STATE = {
    GreyscaleTempered: lambda head: {"head": head, "temperature": 2.0},
    OverExposureRouted: lambda head: {"head": head, "expert": head, "_columns": [(0, 0), (1, 1), (2, 2)]},
}


@pytest.mark.parametrize(
    ("cls", "module"),
    [(GreyscaleTempered, "vehicle_model.calibration"), (OverExposureRouted, "vehicle_model.exposure")],
)
def test_a_pickle_refers_to_the_same_module_and_name_and_old_state_still_predicts(cls: type, module: str) -> None:
    head, X = _head()
    # What unpickling does: the class by its module and name, then the saved attributes, no __init__.
    restored = cls.__new__(cls)
    restored.__dict__.update(OLD_STATE[cls](head))

    assert (cls.__module__, cls.__qualname__) == (module, cls.__name__)
    assert f"{module}\n{cls.__name__}".encode() in pickle.dumps(restored, protocol=0)
    assert restored.predict_proba(X).shape == (len(X), 3)
    assert list(restored.predict(X)) == list(pickle.loads(pickle.dumps(restored)).predict(X))
