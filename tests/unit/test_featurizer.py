"""``Featurizer``: backbone embedding plus colour histograms, the same from paths, bytes or
images, in batches or one at a time."""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.data.dataset import load_dataset
from tasks.data.shifts import apply_shift, shift_key
from vehicle_model.featurizer import (
    DEFAULT_BACKBONE,
    EMBEDDING_DIM,
    FEATURE_DIM,
    HIST_DIM,
    INPUT_SIZE,
    MODEL_DIM,
    PREPROCESSING_VERSION,
    TONE_DIM,
    Featurizer,
    colour_histogram,
    cpu_has_int8_dot,
    is_greyscale,
    is_over_exposed,
    model_inputs,
    preprocess,
    resolve_precision,
)
from vehicle_model.images import ImageDecodeError, decode_image

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def featurizer() -> Featurizer:
    return Featurizer(batch_size=3)


@pytest.fixture(scope="module")
def paths(tiny_dataset: Path) -> list[str]:
    """Eight synthetic images of several sizes and formats."""
    frame = load_dataset(tiny_dataset).frame
    chosen = list(frame["image"][:8])
    assert {Path(p).suffix for p in chosen} >= {".png", ".jpg"}
    return chosen


@pytest.fixture(scope="module")
def features(featurizer: Featurizer, paths: list[str]) -> np.ndarray:
    return featurizer.transform_paths(paths)


def test_features_have_the_documented_shape(features: np.ndarray) -> None:
    assert features.shape == (8, FEATURE_DIM)
    assert FEATURE_DIM == MODEL_DIM + TONE_DIM + 2 == EMBEDDING_DIM + HIST_DIM + TONE_DIM + 2
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    assert len({row.tobytes() for row in features}) == 8  # distinct images, distinct rows


def test_features_are_the_embedding_of_preprocess_then_the_histograms(
    featurizer: Featurizer, paths: list[str], features: np.ndarray
) -> None:
    prepared = [preprocess(decode_image(Path(p).read_bytes())) for p in paths]
    pixels = np.stack([p for p, _ in prepared])
    assert pixels.shape == (8, 3, INPUT_SIZE, INPUT_SIZE)
    assert pixels.dtype == np.float32 and 0 <= pixels.min() and pixels.max() <= 1

    np.testing.assert_allclose(features[:, :EMBEDDING_DIM], featurizer.embed(pixels), atol=1e-4)
    np.testing.assert_array_equal(features[:, EMBEDDING_DIM:], np.stack([h for _, h in prepared]))


def test_bytes_and_decoded_images_give_the_same_features_as_paths(
    featurizer: Featurizer, paths: list[str], features: np.ndarray
) -> None:
    blobs = [Path(p).read_bytes() for p in paths]

    np.testing.assert_allclose(featurizer.transform_bytes(blobs), features, atol=1e-5)
    np.testing.assert_allclose(featurizer.transform_images([decode_image(b) for b in blobs]), features, atol=1e-5)


def test_batches_give_the_single_image_results_in_order(
    featurizer: Featurizer, paths: list[str], features: np.ndarray
) -> None:
    singles = np.concatenate([featurizer.transform_paths([p]) for p in paths])

    np.testing.assert_allclose(features, singles, atol=1e-4)


def test_progress_is_reported_per_batch(featurizer: Featurizer, paths: list[str]) -> None:
    done: list[int] = []

    featurizer.transform_paths(paths, progress=done.append)

    assert done == [3, 3, 2]


def test_empty_input_gives_an_empty_matrix(featurizer: Featurizer) -> None:
    assert featurizer.transform_bytes([]).shape == (0, FEATURE_DIM)


def test_a_bad_image_raises_the_decode_error(featurizer: Featurizer, paths: list[str]) -> None:
    blobs = [Path(p).read_bytes() for p in paths[:4]] + [b"not an image"]

    with pytest.raises(ImageDecodeError) as error:
        featurizer.transform_bytes(blobs)

    assert error.value.reason == "unsupported_format"


def test_each_histogram_sums_to_one(features: np.ndarray) -> None:
    half = HIST_DIM // 2
    whole = features[:, EMBEDDING_DIM : EMBEDDING_DIM + half]
    centre = features[:, EMBEDDING_DIM + half : MODEL_DIM]
    saturation, value = features[:, MODEL_DIM : MODEL_DIM + 3], features[:, MODEL_DIM + 3 : MODEL_DIM + TONE_DIM]

    for part in (whole, centre, saturation, value):
        np.testing.assert_allclose(part.sum(axis=1), 1, atol=1e-5)
        assert (part >= 0).all()


@pytest.mark.parametrize("kind", ["cast_warm", "cast_green", "under_exposure", "low_contrast"])
def test_histograms_survive_a_cast_or_an_exposure_error(tiny_dataset: Path, kind: str) -> None:
    frame = load_dataset(tiny_dataset).frame.iloc[:16]
    images = [decode_image(Path(p).read_bytes()) for p in frame["image"]]
    clean = np.stack([colour_histogram(i)[:HIST_DIM] for i in images])
    keys = [shift_key(hashlib.sha256(Path(p).read_bytes()).hexdigest(), kind) for p in frame["image"]]
    shifted = np.stack([colour_histogram(apply_shift(i, kind, key))[:HIST_DIM] for i, key in zip(images, keys)])
    colours = frame["color"].to_numpy()

    distance = np.abs(shifted[:, None, :] - clean[None, :, :]).sum(axis=2)  # shifted i vs clean j
    # A shifted image still looks more like itself than like any image of another colour
    # (the clamped grey-world gains leave a strong cast on a frame-filling vehicle partly in).
    itself = [distance[i, i] < distance[i, colours != colours[i]].min() for i in range(len(images))]
    assert sum(itself) >= 14  # un-normalised histograms: 1-5 of 16


def test_the_tone_is_taken_before_normalisation() -> None:
    image = Image.new("RGB", (32, 32), (200, 60, 40))
    dark = Image.new("RGB", (32, 32), (70, 21, 14))  # the same colour, 1.5 stops under
    bright, dim = colour_histogram(image), colour_histogram(dark)

    np.testing.assert_allclose(bright[:HIST_DIM], dim[:HIST_DIM])  # normalised away for the heads
    np.testing.assert_array_equal(bright[HIST_DIM + 3 : HIST_DIM + TONE_DIM], [0, 0, 1])  # value marginal: brightest
    np.testing.assert_array_equal(dim[HIST_DIM + 3 : HIST_DIM + TONE_DIM], [1, 0, 0])  # darkest, as drift must see it


def test_the_heads_see_all_but_the_tone(features: np.ndarray) -> None:
    np.testing.assert_array_equal(model_inputs(features), features[:, :MODEL_DIM])
    assert model_inputs(features).shape == (8, EMBEDDING_DIM + HIST_DIM)


def test_histograms_tell_colours_apart() -> None:
    red = colour_histogram(Image.new("RGB", (50, 40), (220, 20, 20)))
    blue = colour_histogram(Image.new("RGB", (50, 40), (20, 20, 220)))
    half = HIST_DIM // 2

    for hist in (red, blue):
        assert np.count_nonzero(hist[:half]) == 1  # a flat colour fills one bin
        np.testing.assert_array_equal(hist[:half], hist[half:HIST_DIM])  # and the centre looks the same
    assert np.argmax(red[:half]) != np.argmax(blue[:half])


def test_histogram_centre_is_the_middle_of_the_image() -> None:
    image = Image.new("RGB", (64, 64), (20, 20, 220))
    image.paste((220, 20, 20), (16, 16, 48, 48))
    hist = colour_histogram(image)
    half = HIST_DIM // 2
    red_bin = np.argmax(colour_histogram(Image.new("RGB", (8, 8), (220, 20, 20)))[:half])

    assert hist[half + red_bin] == pytest.approx(1.0)
    assert hist[red_bin] == pytest.approx(0.25)


def test_version_names_the_backbone_bytes_and_the_preprocessing(tmp_path: Path) -> None:
    version = Featurizer().version
    assert hashlib.sha256(DEFAULT_BACKBONE.read_bytes()).hexdigest()[:16] in version
    assert PREPROCESSING_VERSION in version

    other = tmp_path / "other.onnx"
    other.write_bytes(DEFAULT_BACKBONE.read_bytes() + b"\0")

    # Only the bytes are hashed; the altered file is never opened as a model.
    assert Featurizer(other).version != version


def test_the_same_bytes_at_another_precision_are_another_featurizer_version(tmp_path: Path) -> None:
    backbone = tmp_path / "backbone.onnx"
    backbone.write_bytes(DEFAULT_BACKBONE.read_bytes())

    fp32, int8 = Featurizer(backbone).version, Featurizer(backbone, precision="int8").version

    # Float keeps the name it had before there was a choice, so existing feature caches stay valid.
    assert fp32 == Featurizer().version
    assert int8 != fp32 and "-int8-" in int8


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu sse2 avx2 avx512f avx512_vnni", "int8"),
        ("fpu sse2 avx2 avx_vnni", "int8"),
        ("fpu avx512f amx_tile amx_int8", "int8"),
        ("fpu sse2 avx2 fma avx512f", "fp32"),
    ],
)
def test_auto_precision_follows_the_cpu_flags(tmp_path: Path, flags: str, expected: str) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n")

    assert ("int8" if cpu_has_int8_dot(cpuinfo) else "fp32") == expected


def test_an_unreadable_cpuinfo_means_no_int8_dot_product(tmp_path: Path) -> None:
    assert cpu_has_int8_dot(tmp_path / "missing") is False


def test_precision_is_fp32_int8_or_auto() -> None:
    assert resolve_precision("fp32") == "fp32"
    assert resolve_precision("int8") == "int8"
    assert resolve_precision("auto") == ("int8" if cpu_has_int8_dot() else "fp32")
    with pytest.raises(ValueError, match="choose from auto, fp32, int8"):
        resolve_precision("fp16")


def test_featurizer_pickles_after_use_without_its_session(
    featurizer: Featurizer, paths: list[str], features: np.ndarray
) -> None:
    assert "session" in featurizer.__dict__  # opened by the fixtures above

    copy = pickle.loads(pickle.dumps(featurizer))

    assert "session" not in copy.__dict__
    assert copy.version == featurizer.version
    np.testing.assert_allclose(copy.transform_paths(paths[:3]), features[:3], atol=1e-5)


def test_png_and_its_decoded_pixels_agree_exactly(featurizer: Featurizer) -> None:
    array = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")

    from_bytes = featurizer.transform_bytes([buffer.getvalue()])
    from_image = featurizer.transform_images([Image.fromarray(array)])

    np.testing.assert_array_equal(from_bytes, from_image)


def test_greyscale_frames_are_told_from_colour_ones_however_dark_or_hazy(tiny_dataset: Path) -> None:
    frame = load_dataset(tiny_dataset).frame.iloc[:16]
    images = [decode_image(Path(p).read_bytes()) for p in frame["image"]]
    keys = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in frame["image"]]

    def rows(kind: str | None) -> np.ndarray:
        shifted = [i if kind is None else apply_shift(i, kind, shift_key(k, kind)) for i, k in zip(images, keys)]
        return np.stack([np.concatenate([np.zeros(EMBEDDING_DIM), colour_histogram(i)]) for i in shifted])

    for kind in (None, "under_exposure", "low_contrast", "over_exposure", "cast_green"):
        assert not is_greyscale(rows(kind)).any(), kind
    assert is_greyscale(rows("greyscale")).all()
    # An infrared camera's single-channel JPEG, decoded to RGB as every upload is.
    buffer = io.BytesIO()
    images[0].convert("L").save(buffer, format="JPEG", quality=75)
    infrared = decode_image(buffer.getvalue())
    assert is_greyscale(np.concatenate([np.zeros(EMBEDDING_DIM), colour_histogram(infrared)])[None])[0]


def test_over_exposed_frames_are_told_by_their_clipped_pixels(tiny_dataset: Path) -> None:
    frame = load_dataset(tiny_dataset).frame
    images = [decode_image(Path(p).read_bytes()) for p in frame["image"]]
    keys = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in frame["image"]]

    def flagged(kind: str | None) -> float:
        shifted = [i if kind is None else apply_shift(i, kind, shift_key(k, kind)) for i, k in zip(images, keys)]
        rows = np.stack([np.concatenate([np.zeros(EMBEDDING_DIM), colour_histogram(i)]) for i in shifted])
        return float(is_over_exposed(rows).mean())

    # Measured on these 84 images: 85% of the over-exposed flagged; 5% as they are, 0-2.4% dark,
    # hazy, blurred or greyscale (colour casts, which push one channel up, 12-19%).
    assert flagged("over_exposure") >= 0.6
    for kind in (None, "under_exposure", "low_contrast", "blur", "greyscale"):
        assert flagged(kind) <= 0.1, kind
    white = np.concatenate([np.zeros(EMBEDDING_DIM), colour_histogram(Image.new("RGB", (200, 100), (255, 255, 255)))])
    grey = np.concatenate([np.zeros(EMBEDDING_DIM), colour_histogram(Image.new("RGB", (200, 100), (128, 128, 128)))])
    assert list(is_over_exposed(np.stack([white, grey]))) == [True, False]
