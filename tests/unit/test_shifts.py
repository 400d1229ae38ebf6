"""The shift functions on real synthetic images: deterministic, and each does what it names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tasks.data.dataset import load_dataset
from tasks.data.shifts import (
    SHIFTS,
    apply_shift,
    augmented_training_rows,
    greyscale_calibration_rows,
    over_exposure_expert_rows,
    shift_key,
    shifted_calibration_rows,
    shifted_evaluation_rows,
)
from vehicle_model.images import decode_image

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def images(tiny_dataset: Path) -> list[tuple[str, Image.Image]]:
    """Six real images of different sizes, with their content hashes as stand-ins."""
    frame = load_dataset(tiny_dataset).frame.head(6)
    return [(f"{i:064x}", decode_image(Path(p).read_bytes())) for i, p in enumerate(frame["image"])]


def _shifted(image: Image.Image, sha: str, kind: str) -> np.ndarray:
    return np.asarray(apply_shift(image, kind, shift_key(sha, kind)), dtype=np.float64)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


@pytest.mark.parametrize("kind", sorted(SHIFTS))
def test_each_shift_is_a_pure_function_of_image_and_key(images, kind):
    sha, image = images[0]
    first, again = _shifted(image, sha, kind), _shifted(image, sha, kind)
    assert np.array_equal(first, again)
    assert first.ndim == 3 and first.shape[2] == 3, "always RGB"
    assert _pixels(image).shape == np.asarray(image).shape, "the source is not modified"


def test_eval_and_augment_streams_draw_different_parameters(images):
    sha, image = images[0]
    eval_key, augment_key = shift_key(sha, "under_exposure"), shift_key(sha, "under_exposure", "augment:0", 0)
    assert eval_key != augment_key
    dark_eval = _pixels(apply_shift(image, "under_exposure", eval_key)).mean()
    dark_augment = _pixels(apply_shift(image, "under_exposure", augment_key)).mean()
    assert dark_eval != dark_augment


def test_unknown_kind_is_an_error_naming_the_kinds():
    with pytest.raises(ValueError, match="greyscale"):
        shift_key("0" * 64, "sepia")


def test_greyscale_has_equal_channels(images):
    for sha, image in images:
        grey = _shifted(image, sha, "greyscale")
        assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])


def test_exposure_moves_mean_brightness(images):
    for sha, image in images:
        mean = _pixels(image).mean()
        assert _shifted(image, sha, "under_exposure").mean() < 0.55 * mean
        assert _shifted(image, sha, "over_exposure").mean() > mean


def _channel_means(pixels: np.ndarray) -> np.ndarray:
    return pixels.reshape(-1, 3).mean(axis=0)


def test_colour_casts_tilt_the_channel_balance(images):
    for sha, image in images:
        r, g, b = _channel_means(_pixels(image))
        wr, _, wb = _channel_means(_shifted(image, sha, "cast_warm"))
        cr, _, cb = _channel_means(_shifted(image, sha, "cast_cool"))
        gr, gg, gb = _channel_means(_shifted(image, sha, "cast_green"))
        assert wr / wb > r / b, "warm: red gains on blue"
        assert cb / cr > b / r, "cool: blue gains on red"
        assert gg / (gr + gb) > g / (r + b), "green: green gains on both"


def test_low_contrast_narrows_the_spread_around_the_same_mean(images):
    for sha, image in images:
        original, flat = _pixels(image), _shifted(image, sha, "low_contrast")
        assert flat.std() < 0.5 * original.std()
        assert flat.mean() == pytest.approx(original.mean(), abs=3)


def _detail(pixels: np.ndarray) -> float:
    """Mean absolute difference between horizontal neighbours: high-frequency energy."""
    return float(np.abs(np.diff(pixels, axis=1)).mean())


def test_blur_removes_detail_and_keeps_the_size(images):
    for sha, image in images:
        soft = _shifted(image, sha, "blur")
        assert soft.shape == _pixels(image).shape
        assert _detail(soft) < 0.7 * _detail(_pixels(image))


def test_jpeg_is_lossy_at_the_same_size(images):
    for sha, image in images:
        compressed = _shifted(image, sha, "jpeg")
        assert compressed.shape == _pixels(image).shape
        assert np.abs(compressed - _pixels(image)).mean() > 1.0


def test_small_scale_is_about_a_quarter_of_each_side(images):
    for sha, image in images:
        small = apply_shift(image, "small_scale", shift_key(sha, "small_scale"))
        assert 0.2 <= small.width / image.width <= 0.3 and 0.2 <= small.height / image.height <= 0.3


def test_tight_crop_is_a_window_of_the_original(images):
    for sha, image in images:
        crop = _shifted(image, sha, "tight_crop")
        h, w = crop.shape[:2]
        assert 0.58 <= w / image.width <= 0.72 and 0.58 <= h / image.height <= 0.72
        original = _pixels(image)
        found = any(
            np.array_equal(original[top : top + h, left : left + w], crop)
            for top in range(image.height - h + 1)
            for left in range(image.width - w + 1)
            if original[top, left].tolist() == crop[0, 0].tolist()
        )
        assert found


def test_evaluation_rows_are_the_test_split_under_every_kind():
    frame = pd.DataFrame(
        {
            "image": ["a.png", "b.png", "c.png"],
            "color": ["red", "blue", "red"],
            "sha256": ["1" * 64, "2" * 64, "3" * 64],
            "split": ["train", "test", "test"],
        }
    )
    rows = shifted_evaluation_rows(frame)
    assert len(rows) == 2 * len(SHIFTS)
    assert set(rows["image"]) == {"b.png", "c.png"}, "never train or validation images"
    assert set(rows["split"]) == {f"shift.{kind}" for kind in SHIFTS}
    assert rows["sha256"].is_unique and not set(rows["sha256"]) & set(frame["sha256"])
    assert list(rows.loc[rows["shift"] == "blur", "color"]) == ["blue", "red"], "labels travel with the image"


def test_augmented_rows_are_copies_of_the_train_split_only():
    frame = pd.DataFrame(
        {
            "image": [f"{i}.png" for i in range(40)],
            "color": ["red", "blue"] * 20,
            "sha256": [f"{i:064x}" for i in range(40)],
            "split": ["train"] * 30 + ["validation"] * 5 + ["test"] * 5,
        }
    )
    rows = augmented_training_rows(frame, copies=2, seed=0)
    assert len(rows) == 2 * 30 and set(rows["split"]) == {"augment"}
    assert set(rows["image"]) == set(frame.loc[frame["split"] == "train", "image"]), "never validation or test"
    assert rows["sha256"].is_unique and not set(rows["sha256"]) & set(frame["sha256"])
    assert not set(rows["sha256"]) & set(shifted_evaluation_rows(frame)["sha256"])
    assert set(rows["shift"]) <= set(SHIFTS) and rows["shift"].nunique() > 3
    assert list(rows["color"][:30]) == list(frame["color"][:30]), "labels travel with the image"


def test_greyscale_calibration_rows_are_the_validation_split_in_greyscale():
    frame = pd.DataFrame(
        {
            "image": [f"{i}.png" for i in range(10)],
            "color": ["red", "blue"] * 5,
            "sha256": [f"{i:064x}" for i in range(10)],
            "split": ["train"] * 6 + ["validation"] * 2 + ["test"] * 2,
        }
    )
    rows = greyscale_calibration_rows(frame)
    assert list(rows["image"]) == ["6.png", "7.png"] and list(rows["color"]) == ["red", "blue"]
    assert set(rows["split"]) == {"calibrate.greyscale"} and set(rows["shift"]) == {"greyscale"}
    others = pd.concat([frame, shifted_evaluation_rows(frame), augmented_training_rows(frame, copies=1, seed=0)])
    assert rows["sha256"].is_unique and not set(rows["sha256"]) & set(others["sha256"])


def test_shifted_calibration_rows_are_the_validation_split_under_every_other_kind():
    frame = pd.DataFrame(
        {
            "image": [f"{i}.png" for i in range(10)],
            "color": ["red", "blue"] * 5,
            "sha256": [f"{i:064x}" for i in range(10)],
            "split": ["train"] * 6 + ["validation"] * 2 + ["test"] * 2,
        }
    )
    rows = shifted_calibration_rows(frame)
    kinds = [kind for kind in SHIFTS if kind != "greyscale"]
    assert len(rows) == 2 * len(kinds) and set(rows["image"]) == {"6.png", "7.png"}, "validation only"
    assert set(rows["split"]) == {f"calibrate.{kind}" for kind in kinds} and set(rows["shift"]) == set(kinds)
    assert list(rows.loc[rows["shift"] == "blur", "color"]) == ["red", "blue"], "labels travel with the image"
    greyscale = greyscale_calibration_rows(frame)
    assert set(greyscale["split"]) == {"calibrate.greyscale"}, "greyscale completes the kinds under the same prefix"
    others = pd.concat([frame, shifted_evaluation_rows(frame), greyscale, augmented_training_rows(frame, 1, seed=0)])
    assert rows["sha256"].is_unique and not set(rows["sha256"]) & set(others["sha256"])


def test_over_exposure_expert_rows_are_the_training_split_over_exposed_on_a_stream_of_their_own():
    frame = pd.DataFrame(
        {
            "image": [f"{i}.png" for i in range(10)],
            "color": ["red", "blue"] * 5,
            "sha256": [f"{i:064x}" for i in range(10)],
            "split": ["train"] * 6 + ["validation"] * 2 + ["test"] * 2,
        }
    )
    rows = over_exposure_expert_rows(frame, seed=0)
    assert list(rows["image"]) == [f"{i}.png" for i in range(6)] and list(rows["color"]) == ["red", "blue"] * 3
    assert set(rows["split"]) == {"expert.over_exposure"} and set(rows["shift"]) == {"over_exposure"}
    others = pd.concat(
        [
            frame,
            shifted_evaluation_rows(frame),
            augmented_training_rows(frame, copies=2, seed=0),
            greyscale_calibration_rows(frame),
        ]
    )
    assert rows["sha256"].is_unique and not set(rows["sha256"]) & set(others["sha256"])
    assert not set(rows["sha256"]) & set(over_exposure_expert_rows(frame, seed=1)["sha256"]), "the seed draws anew"


def test_an_image_keeps_its_copies_as_the_dataset_grows():
    frame = pd.DataFrame({"image": ["a.png", "b.png"], "sha256": ["1" * 64, "2" * 64], "split": ["train", "train"]})
    grown = pd.concat([pd.DataFrame({"image": ["c.png"], "sha256": ["3" * 64], "split": ["train"]}), frame])
    before = augmented_training_rows(frame, copies=1, seed=0).set_index("image")
    after = augmented_training_rows(grown, copies=1, seed=0).set_index("image")
    assert after.loc[["a.png", "b.png"], ["shift", "sha256"]].equals(before[["shift", "sha256"]])
    assert augmented_training_rows(frame, copies=0, seed=0).empty
