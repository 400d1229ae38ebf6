"""A decision per attribute: confident above the version's threshold, uncertain below it or
without thresholds, undetermined for colour on a greyscale frame; the policy survives JSON
and travels with the pyfunc."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest
from mlflow.pyfunc import PythonModelContext
from PIL import Image, ImageOps
from sklearn.linear_model import LogisticRegression

from tasks.data.dataset import load_dataset
from vehicle_model.decisions import (
    CONFIDENT,
    NO_POLICY_REASON,
    UNCERTAIN,
    UNDETERMINED,
    DecisionPolicy,
    colour_attributes,
    is_colour_attribute,
)
from vehicle_model.featurizer import DEFAULT_BACKBONE, Featurizer
from vehicle_model.model import VehicleClassifier
from vehicle_model.pyfunc import BACKBONE_ARTIFACT, DECISIONS_ARTIFACT, HEADS_ARTIFACT, VehiclePyfunc

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def fitted(tiny_dataset: Path) -> tuple[VehicleClassifier, list[Image.Image]]:
    """Heads fitted on the real features of the tiny dataset, and one of its images in colour and in greyscale."""
    frame = load_dataset(tiny_dataset).frame
    featurizer = Featurizer()
    X = featurizer.transform_paths(list(frame["image"]))
    heads = {a: LogisticRegression(max_iter=500).fit(X, frame[a]) for a in ("vehicle_type", "color")}
    colour = Image.open(frame["image"].iloc[0]).convert("RGB")
    return VehicleClassifier(featurizer, heads), [colour, ImageOps.grayscale(colour).convert("RGB")]


def _policy(thresholds: dict[str, float | None]) -> DecisionPolicy:
    return DecisionPolicy(thresholds=thresholds, target_precision=0.98, colour_attributes=("color",))


def _scores(classifier: VehicleClassifier, image: Image.Image) -> dict[str, float]:
    return {a: max(r["probabilities"].values()) for a, r in classifier.predict_images([image])[0].items()}


def test_an_answer_at_or_above_the_threshold_is_confident_and_below_it_uncertain(fitted) -> None:
    classifier, (colour, _) = fitted
    scores = _scores(classifier, colour)
    at = VehicleClassifier(classifier.featurizer, classifier.heads, _policy(scores))
    above = VehicleClassifier(
        classifier.featurizer, classifier.heads, _policy({a: s + 1e-4 for a, s in scores.items()})
    )

    confident, uncertain = at.predict_images([colour])[0], above.predict_images([colour])[0]

    for attribute in scores:
        assert confident[attribute]["decision"] == CONFIDENT and "reason" not in confident[attribute]
        assert uncertain[attribute]["decision"] == UNCERTAIN
        assert "below this version's threshold" in uncertain[attribute]["reason"]
        assert attribute in uncertain[attribute]["reason"]
        assert uncertain[attribute]["label"] == confident[attribute]["label"]
        assert uncertain[attribute]["probabilities"] == confident[attribute]["probabilities"]


def test_colour_on_a_greyscale_frame_is_undetermined_and_keeps_its_most_probable_label(fitted) -> None:
    classifier, (colour, grey) = fitted
    policy = _policy({"vehicle_type": 0.0, "color": 0.0})  # every score clears it
    record = VehicleClassifier(classifier.featurizer, classifier.heads, policy).predict_images([colour, grey])

    assert record[0]["color"]["decision"] == CONFIDENT, "colour on a colour frame is never undetermined"
    assert record[1]["color"]["decision"] == UNDETERMINED
    assert record[1]["color"]["reason"] == "color cannot be told on a greyscale frame"
    probabilities = record[1]["color"]["probabilities"]
    assert record[1]["color"]["label"] == max(probabilities, key=probabilities.get)
    assert record[1]["vehicle_type"]["decision"] == CONFIDENT, "the type is still told on greyscale"


def test_an_attribute_no_threshold_reached_the_target_for_is_never_confident(fitted) -> None:
    classifier, (colour, _) = fitted
    record = VehicleClassifier(classifier.featurizer, classifier.heads, _policy({"vehicle_type": None, "color": 0.0}))

    answer = record.predict_images([colour])[0]["vehicle_type"]

    assert answer["decision"] == UNCERTAIN
    assert "target precision 0.98" in answer["reason"]


def test_a_version_without_thresholds_answers_uncertain_but_still_knows_greyscale(fitted) -> None:
    classifier, (colour, grey) = fitted
    old = VehicleClassifier(classifier.featurizer, classifier.heads)

    on_colour, on_grey = old.predict_images([colour, grey])

    assert {r["decision"] for r in on_colour.values()} == {UNCERTAIN}
    assert {r["reason"] for r in on_colour.values()} == {NO_POLICY_REASON}
    assert on_grey["color"]["decision"] == UNDETERMINED
    assert on_grey["vehicle_type"]["decision"] == UNCERTAIN


def test_the_policy_round_trips_through_json() -> None:
    policy = DecisionPolicy(
        thresholds={"vehicle_type": 0.8125, "color": None},
        target_precision=0.98,
        colour_attributes=("color",),
        coverage={"vehicle_type": 0.93, "color": 0.0},
    )

    assert DecisionPolicy.from_json(policy.to_json()) == policy
    with pytest.raises(ValueError, match="format"):
        DecisionPolicy.from_dict({**policy.to_dict(), "format": 99})


def test_colour_attributes_are_told_by_name() -> None:
    assert colour_attributes(["vehicle_type", "color", "roof_colour", "colorway"]) == ("color", "roof_colour")
    assert is_colour_attribute("Colour") and not is_colour_attribute("label")


def test_the_pyfunc_loads_the_policy_artifact_and_answers_without_one(fitted, tmp_path: Path) -> None:
    classifier, (colour, _) = fitted
    heads, policy = tmp_path / "heads.joblib", tmp_path / "decisions.json"
    joblib.dump(dict(classifier.heads), heads)
    policy.write_text(_policy({"vehicle_type": 0.0, "color": 0.0}).to_json())
    artifacts = {BACKBONE_ARTIFACT: str(DEFAULT_BACKBONE), HEADS_ARTIFACT: str(heads)}
    blob = tmp_path / "car.png"
    colour.save(blob)

    answers = {}
    for name, extra in {"new": {DECISIONS_ARTIFACT: str(policy)}, "old": {}}.items():
        model = VehiclePyfunc()
        model.load_context(PythonModelContext(artifacts={**artifacts, **extra}, model_config=None))
        answers[name] = model.predict(None, [blob.read_bytes()])[0]

    assert {r["decision"] for r in answers["new"].values()} == {CONFIDENT}
    assert {r["decision"] for r in answers["old"].values()} == {UNCERTAIN}
