"""Controlled lighting and camera shifts: the evaluation set that training never sees.

Each shift is a pure function of an RGB image and a random generator, drawing its strength
from a fixed range, so a shifted image is a function of (image content, kind, seed) alone and
its features can be cached under a key derived from those three. The shifted evaluation set
is every image of the test split under every kind, with parameters drawn from the ``eval``
stream; augmented training copies use the same families drawn from the ``augment`` stream,
so the two never share a parameter draw. Adding a kind is one entry in ``SHIFTS`` (and in
``AUGMENT_WEIGHTS``).

Strengths are set to what a phone or a cheap security camera produces, not to the limit of
legibility: a cast of 20-30% per channel, an exposure one stop off, a Gaussian blur of about
1% of the image width, JPEG quality 8-15, a quarter of the linear size, a crop keeping
60-70% of each side.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter, ImageOps

from tasks.data.dataset import SPLIT_COLUMN
from tasks.data.validation import SHA_COLUMN

Shift = Callable[[Image.Image, np.random.Generator], Image.Image]

# Part of every shifted image's cache key: bump when a function or a range below changes.
SHIFT_VERSION = "shifts-v1"
EVAL_SEED = 0  # the shifted evaluation set is the same for every training seed
SHIFT_COLUMN = "shift"
SHIFTED_SPLIT_PREFIX = "shift."
AUGMENT_SPLIT = "augment"
CALIBRATION_SPLIT_PREFIX = "calibrate."  # + kind: validation images under one shift
GREYSCALE_CALIBRATION_SPLIT = f"{CALIBRATION_SPLIT_PREFIX}greyscale"
OVER_EXPOSURE_EXPERT_SPLIT = "expert.over_exposure"


def _gains(image: Image.Image, red: float, green: float, blue: float) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) * np.array([red, green, blue], dtype=np.float32)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def cast_warm(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Tungsten or sunset light: red up, blue down."""
    return _gains(image, rng.uniform(1.10, 1.25), 1.0, rng.uniform(0.65, 0.80))


def cast_cool(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Shade or overcast daylight on a daylight white balance: blue up, red down."""
    return _gains(image, rng.uniform(0.70, 0.85), rng.uniform(0.95, 1.0), rng.uniform(1.10, 1.25))


def cast_green(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Fluorescent and mercury-vapour street light."""
    return _gains(image, rng.uniform(0.75, 0.85), rng.uniform(1.10, 1.25), rng.uniform(0.75, 0.85))


def under_exposure(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """One to one and a half stops under: every channel scaled by 0.35-0.5."""
    factor = rng.uniform(0.35, 0.50)
    return _gains(image, factor, factor, factor)


def over_exposure(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """About one stop over: every channel scaled by 1.6-2.0, highlights clipped."""
    factor = rng.uniform(1.6, 2.0)
    return _gains(image, factor, factor, factor)


def low_contrast(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Haze or a dirty lens: pixels pulled 55-65% of the way to the image's mean grey."""
    pixels = np.asarray(image, dtype=np.float32)
    keep = rng.uniform(0.35, 0.45)
    mean = pixels.mean()
    return Image.fromarray(np.clip(mean + keep * (pixels - mean) + 0.5, 0, 255).astype(np.uint8))


def blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Focus or motion softness: a Gaussian blur of 0.8-1.2% of the longer side."""
    radius = rng.uniform(0.008, 0.012) * max(image.size)
    return image.filter(ImageFilter.GaussianBlur(radius))


def jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A messaging app's recompression: JPEG at quality 8-15 with 4:2:0 chroma."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(8, 16)), subsampling=2)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def small_scale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A distant vehicle or a thumbnail: a quarter of the linear size (0.22-0.28)."""
    factor = rng.uniform(0.22, 0.28)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image.resize(size, Image.Resampling.BOX)


def tight_crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A tighter framing: 60-70% of each side kept, the window's centre jittered by up to 10%."""
    keep = rng.uniform(0.60, 0.70)
    w, h = round(image.width * keep), round(image.height * keep)
    cx = image.width / 2 + rng.uniform(-0.1, 0.1) * image.width
    cy = image.height / 2 + rng.uniform(-0.1, 0.1) * image.height
    left = int(np.clip(cx - w / 2, 0, image.width - w))
    top = int(np.clip(cy - h / 2, 0, image.height - h))
    return image.crop((left, top, left + w, top + h))


def greyscale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """An infrared night camera: luminance only, R = G = B."""
    return ImageOps.grayscale(image).convert("RGB")


SHIFTS: dict[str, Shift] = {
    "cast_warm": cast_warm,
    "cast_cool": cast_cool,
    "cast_green": cast_green,
    "under_exposure": under_exposure,
    "over_exposure": over_exposure,
    "low_contrast": low_contrast,
    "blur": blur,
    "jpeg": jpeg,
    "small_scale": small_scale,
    "tight_crop": tight_crop,
    "greyscale": greyscale,
}


def shift_key(sha256: str, kind: str, stream: str = "eval", seed: int = EVAL_SEED) -> str:
    """The cache key of one shifted image: a hash of what determines its pixels.

    Args:
        sha256: content hash of the source image.
        kind: a ``SHIFTS`` name.
        stream: ``eval`` for the evaluation set, ``augment:<copy>`` for training copies.
        seed: seed of the stream.
    """
    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; choose from {sorted(SHIFTS)}")
    return hashlib.sha256(f"{SHIFT_VERSION}:{stream}:{seed}:{kind}:{sha256}".encode()).hexdigest()


def apply_shift(image: Image.Image, kind: str, key: str) -> Image.Image:
    """``image`` under shift ``kind``, its strength drawn from a generator seeded by ``key``."""
    rng = np.random.default_rng(int(key[:16], 16))
    return SHIFTS[kind](image.convert("RGB"), rng)


def shifted_evaluation_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The shifted evaluation set as manifest rows: every test image under every kind.

    Each row keeps its image path and labels, names its kind in ``shift``, and takes the
    shifted image's key as its ``sha256`` and ``shift.<kind>`` as its split, so the feature
    cache and ``assemble`` treat it like any other image.
    """
    test = frame[frame[SPLIT_COLUMN] == "test"]
    parts = [
        test.assign(
            **{
                SHIFT_COLUMN: kind,
                SHA_COLUMN: [shift_key(sha, kind) for sha in test[SHA_COLUMN]],
                SPLIT_COLUMN: f"{SHIFTED_SPLIT_PREFIX}{kind}",
            }
        )
        for kind in SHIFTS
    ]
    return pd.concat(parts, ignore_index=True) if parts else test.iloc[:0]


# How often each kind is drawn for a training copy: the kinds that cost type or colour the most
# with normalised histograms alone (blur, small scale, JPEG; over-exposure, low contrast) twice
# as often as the rest (the casts, which the normalisation already absorbs, among them).
AUGMENT_WEIGHTS: dict[str, float] = {
    "cast_warm": 1,
    "cast_cool": 1,
    "cast_green": 1,
    "under_exposure": 1,
    "over_exposure": 2,
    "low_contrast": 2,
    "blur": 2,
    "jpeg": 2,
    "small_scale": 2,
    "tight_crop": 1,
    "greyscale": 1,
}


def augment_kind(sha256: str, copy: int, seed: int) -> str:
    """The kind of an image's ``copy``-th training copy: a weighted draw seeded by the image,
    so an image keeps its copies (and their cached features) as the dataset grows."""
    digest = hashlib.sha256(f"{SHIFT_VERSION}:augment-kind:{seed}:{copy}:{sha256}".encode()).hexdigest()
    kinds = list(AUGMENT_WEIGHTS)
    weights = np.array([AUGMENT_WEIGHTS[k] for k in kinds], dtype=float)
    return str(np.random.default_rng(int(digest[:16], 16)).choice(kinds, p=weights / weights.sum()))


def augmented_training_rows(frame: pd.DataFrame, copies: int, seed: int) -> pd.DataFrame:
    """``copies`` shifted copies of every training image as manifest rows of split ``augment``.

    Copies come from the ``augment`` stream (never the evaluation draws) and only from the
    train split, so validation, test and the shifted evaluation set stay untouched; like the
    shifted evaluation rows they exist only as cached features.
    """
    train = frame[frame[SPLIT_COLUMN] == "train"]
    parts = []
    for copy in range(copies):
        kinds = [augment_kind(sha, copy, seed) for sha in train[SHA_COLUMN]]
        parts.append(
            train.assign(
                **{
                    SHIFT_COLUMN: kinds,
                    SHA_COLUMN: [
                        shift_key(sha, kind, f"augment:{copy}", seed) for sha, kind in zip(train[SHA_COLUMN], kinds)
                    ],
                    SPLIT_COLUMN: AUGMENT_SPLIT,
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else train.iloc[:0]


def greyscale_calibration_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Every validation image in greyscale, as manifest rows of split ``calibrate.greyscale``:
    what the heads' confidence on greyscale frames is fitted on (``vehicle_model.calibration``).
    Validation images, so the test split and the shifted evaluation set stay unseen."""
    validation = frame[frame[SPLIT_COLUMN] == "validation"]
    return validation.assign(
        **{
            SHIFT_COLUMN: "greyscale",
            SHA_COLUMN: [shift_key(sha, "greyscale", "calibrate") for sha in validation[SHA_COLUMN]],
            SPLIT_COLUMN: GREYSCALE_CALIBRATION_SPLIT,
        }
    )


def over_exposure_expert_rows(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Every training image over-exposed, as manifest rows of split ``expert.over_exposure``:
    what each head's expert for over-exposed frames is fitted on (``vehicle_model.exposure``).
    Drawn from their own ``expert`` stream, so they share no draw with the copies or the
    evaluation set."""
    train = frame[frame[SPLIT_COLUMN] == "train"]
    return train.assign(
        **{
            SHIFT_COLUMN: "over_exposure",
            SHA_COLUMN: [shift_key(sha, "over_exposure", "expert", seed) for sha in train[SHA_COLUMN]],
            SPLIT_COLUMN: OVER_EXPOSURE_EXPERT_SPLIT,
        }
    )


def shifted_calibration_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Every validation image under every kind but greyscale (``greyscale_calibration_rows``
    has that one), as manifest rows of split ``calibrate.<kind>``: with the clean and the
    greyscale validation images, the conditions the decision thresholds must hold on
    (``tasks.training.selective``). A copy per kind, not one drawn per image: each kind needs
    enough answers of its own for its precision to be known."""
    validation = frame[frame[SPLIT_COLUMN] == "validation"]
    parts = [
        validation.assign(
            **{
                SHIFT_COLUMN: kind,
                SHA_COLUMN: [shift_key(sha, kind, "calibrate") for sha in validation[SHA_COLUMN]],
                SPLIT_COLUMN: f"{CALIBRATION_SPLIT_PREFIX}{kind}",
            }
        )
        for kind in SHIFTS
        if kind != "greyscale"
    ]
    return pd.concat(parts, ignore_index=True) if parts else validation.iloc[:0]
