"""Image features: EfficientNet-Lite0 embedding (ONNX Runtime) plus HSV colour histograms.

The backbone is strong on shape and weak on colour, so the pooled 1280-d embedding is
concatenated with colour histograms of the whole image and of its centre (where the
vehicle usually is). The histograms are taken after illumination normalisation, so a colour
cast, an exposure error or haze does not move every bin. Three things follow that the heads
never see (``model_inputs``): ``TONE_DIM`` numbers, the saturation and value marginals of the
image *before* normalisation, which drift monitoring reads to notice dark or washed-out
traffic; the image's chroma, which tells a greyscale frame (an infrared night camera)
from a colour one (``is_greyscale``); and its share of clipped pixels, which tells an
over-exposed frame (``is_over_exposed``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import cache, cached_property
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from vehicle_model.images import ImageLimits, decode_image

ASSETS = Path(__file__).parent / "assets"
Precision = Literal["fp32", "int8"]
# The float export and its static INT8 quantization (docs/featurizer.md, "INT8 backbone").
BACKBONES: dict[str, Path] = {
    "fp32": ASSETS / "efficientnet_lite0.onnx",
    "int8": ASSETS / "efficientnet_lite0_int8.onnx",
}
DEFAULT_BACKBONE = BACKBONES["fp32"]
# CPU flags of an 8-bit dot-product instruction; without one ONNX Runtime's INT8 kernels gain
# little or nothing over float, so ``auto`` keeps float there.
INT8_DOT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
INPUT_SIZE = 224
EMBEDDING_DIM = 1280
HIST_BINS = (12, 3, 3)  # hue, saturation, value
HIST_DIM = 2 * int(np.prod(HIST_BINS))
TONE_DIM = HIST_BINS[1] + HIST_BINS[2]
MODEL_DIM = EMBEDDING_DIM + HIST_DIM  # what the heads are fitted on
CHROMA_COLUMN = MODEL_DIM + TONE_DIM
CLIPPED_COLUMN = CHROMA_COLUMN + 1
FEATURE_DIM = CLIPPED_COLUMN + 1
# Grey-world gains are clamped so a vehicle that fills the frame is not balanced to grey.
GREY_WORLD_GAINS = (0.6, 1.6)
WHITE_PATCH_PERCENTILE = 99.0
BLACK_POINT_PERCENTILE = 1.0
# The black point stays below half the white point, so a nearly flat image (a close-up of a
# door) is not stretched into noise; haze pulls the black point to 30-45% of the white.
BLACK_POINT_MAX = 0.5
# A pixel shows colour when its channels differ by more than CHROMA_LEVELS (of 255): JPEG
# rounding of a grey pixel stays within it. A frame where fewer than GREYSCALE_COLOURED of the
# pixels show colour is greyscale: 0 for every greyscale frame measured, JPEG or not, and at
# least 0.03 for every synthetic image, dark, hazy or over-exposed ones included; JPEG at
# quality 8-15 can wash the chroma out of a whole image, which is then greyscale indeed.
CHROMA_LEVELS = 3
GREYSCALE_COLOURED = 0.01
# A pixel is clipped when its brightest channel is at CLIP_LEVEL or above. A frame with more
# than OVER_EXPOSED_CLIPPED of its pixels clipped is over-exposed: on the default data's test
# images that flags 80% of those over-exposed by one stop and 6% of the rest (colour casts
# mostly, which push one channel up); nine clean images in ten have under 4% clipped.
CLIP_LEVEL = 250
OVER_EXPOSED_CLIPPED = 0.10
# Part of every feature-cache key and of every registered model's featurizer tag: change it
# whenever preprocessing, decoding included, changes. What each version changed: docs/featurizer.md.
PREPROCESSING_VERSION = "resize224-bilinear+hsv12x3x3-global-centre-greyworld-levels+tone+chroma+clipped-v5"


def usable_cores() -> int:
    """Cores this process may run on (respects CPU affinity, unlike ``os.cpu_count``)."""
    return len(os.sched_getaffinity(0))


@cache
def cpu_has_int8_dot(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has VNNI or AMX (Linux; elsewhere, and when unreadable, no)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return not INT8_DOT_FLAGS.isdisjoint(flags)


def resolve_precision(precision: str) -> Precision:
    """``fp32`` or ``int8`` as given; ``auto`` is INT8 where the CPU has an 8-bit dot product."""
    if precision == "auto":
        return "int8" if cpu_has_int8_dot() else "fp32"
    if precision not in BACKBONES:
        raise ValueError(f"unknown backbone precision {precision!r}; choose from auto, {', '.join(BACKBONES)}")
    return precision  # type: ignore[return-value]


def preprocess(image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """Turns one RGB image into the backbone input and its colour histogram.

    Returns:
        A float32 CHW array in [0, 1] of size 224x224 and a float32 histogram vector.
    """
    pixels = np.empty((3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    return pixels, _preprocess_into(image, pixels)


def _preprocess_into(image: Image.Image, pixels: np.ndarray) -> np.ndarray:
    """Writes the backbone input into ``pixels`` (a CHW float32 slot) and returns the histogram.

    Converting uint8 to float32 while dividing, straight into the batch, is the same
    arithmetic as ``asarray(float32) / 255`` without two temporary arrays and a stack.
    """
    resized = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    np.divide(np.asarray(resized).transpose(2, 0, 1), np.float32(255.0), out=pixels, dtype=np.float32)
    return colour_histogram(resized)


def colour_histogram(image: Image.Image) -> np.ndarray:
    """HSV histograms of the illumination-normalised whole image and of its central half,
    each summing to 1, then the raw image's tone (``TONE_DIM`` numbers), its chroma and its
    share of clipped pixels."""
    small = image.resize((64, 64), Image.Resampling.BILINEAR)
    raw = np.asarray(small.convert("HSV"), dtype=np.int32)
    hsv = np.asarray(normalise_illumination(small).convert("HSV"), dtype=np.int32)
    centre = hsv[16:48, 16:48]
    return np.concatenate(
        [_hsv_histogram(hsv), _hsv_histogram(centre), _tone(_hsv_histogram(raw)), _chroma_and_clipped(small)]
    ).astype(np.float32)


def normalise_illumination(image: Image.Image) -> Image.Image:
    """Grey-world white balance, then levels: a cast, an exposure error or haze undone.

    Grey world scales each channel so the channel means agree (a cast shifts them apart).
    Levels then map the darkest pixels (the ``BLACK_POINT_PERCENTILE`` of the per-pixel
    minimum) to black and the brightest (the ``WHITE_PATCH_PERCENTILE`` of the per-pixel
    maximum) to full scale, the same for every channel: that undoes under-exposure and the
    grey veil of haze or low contrast without a hue change.
    """
    pixels = np.asarray(image, dtype=np.float32)
    means = pixels.reshape(-1, 3).mean(axis=0)
    gains = np.clip(means.mean() / np.maximum(means, 1.0), *GREY_WORLD_GAINS)
    balanced = pixels * gains
    lowest, highest = _channel_extremes(balanced)
    white = float(np.percentile(highest, WHITE_PATCH_PERCENTILE))
    black = min(float(np.percentile(lowest, BLACK_POINT_PERCENTILE)), BLACK_POINT_MAX * white)
    balanced -= black
    balanced *= 255.0 / max(white - black, 1.0)
    balanced += 0.5  # rounds on the cast below
    return Image.fromarray(np.clip(balanced, 0, 255).astype(np.uint8))


def _chroma_and_clipped(image: Image.Image) -> list[float]:
    """The fraction of pixels that show colour (channels more than ``CHROMA_LEVELS`` apart),
    and the fraction whose brightest channel is at ``CLIP_LEVEL`` or above."""
    lowest, highest = _channel_extremes(np.asarray(image))
    return [
        float(np.count_nonzero(highest - lowest > CHROMA_LEVELS) / lowest.size),
        float(np.count_nonzero(highest >= CLIP_LEVEL) / highest.size),
    ]


def _channel_extremes(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's smallest and largest channel (three element-wise passes are several times
    faster than a reduction over the last axis of length 3)."""
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return np.minimum(np.minimum(red, green), blue), np.maximum(np.maximum(red, green), blue)


def is_greyscale(features: np.ndarray) -> np.ndarray:
    """Which rows of featurizer output come from greyscale frames (R = G = B, give or take JPEG)."""
    return features[:, CHROMA_COLUMN] < GREYSCALE_COLOURED


def is_over_exposed(features: np.ndarray) -> np.ndarray:
    """Which rows of featurizer output come from over-exposed frames (many clipped pixels)."""
    return features[:, CLIPPED_COLUMN] > OVER_EXPOSED_CLIPPED


def _tone(histogram: np.ndarray) -> np.ndarray:
    """Saturation and value marginals of one ``HIST_BINS`` histogram."""
    cube = histogram.reshape(HIST_BINS)
    return np.concatenate([cube.sum(axis=(0, 2)), cube.sum(axis=(0, 1))])


def model_inputs(features: np.ndarray) -> np.ndarray:
    """The columns of featurizer output the heads see: embedding and normalised histograms."""
    return features[:, :MODEL_DIM]


def _hsv_histogram(hsv: np.ndarray) -> np.ndarray:
    h_bins, s_bins, v_bins = HIST_BINS
    h = hsv[..., 0] * h_bins // 256
    s = hsv[..., 1] * s_bins // 256
    v = hsv[..., 2] * v_bins // 256
    index = (h * s_bins + s) * v_bins + v
    counts = np.bincount(index.ravel(), minlength=h_bins * s_bins * v_bins)
    return (counts / counts.sum()).astype(np.float32)


class Featurizer:
    """Batched feature extraction: parallel decoding, then the backbone, batch by batch.

    Args:
        backbone_path: the ONNX file; defaults to the one shipped in ``assets/`` for ``precision``.
        threads: ONNX Runtime intra-op threads, and decode workers; defaults to the usable cores.
        batch_size: images per backbone call.
        limits: decoding limits for byte inputs.
        precision: ``fp32``, ``int8`` or ``auto`` (``resolve_precision``); with a
            ``backbone_path``, the precision of that file.
    """

    def __init__(
        self,
        backbone_path: Path | str | None = None,
        threads: int | None = None,
        batch_size: int = 32,
        limits: ImageLimits = ImageLimits(),
        precision: str = "fp32",
    ) -> None:
        self.precision = resolve_precision(precision)
        self.backbone_path = Path(backbone_path or BACKBONES[self.precision])
        self.threads = threads or usable_cores()
        self.batch_size = batch_size
        self.limits = limits

    def __getstate__(self) -> dict:
        # The ONNX session is not picklable; a copy in another process opens its own.
        return {k: v for k, v in self.__dict__.items() if k not in ("session", "_io_names")}

    @cached_property
    def version(self) -> str:
        """Identifies backbone weights, precision and preprocessing; changes invalidate cached
        features (float keeps the name it had before INT8 existed, so its caches stay valid)."""
        digest = hashlib.sha256(self.backbone_path.read_bytes()).hexdigest()[:16]
        precision = "" if self.precision == "fp32" else f"{self.precision}-"
        return f"effnet-lite0-{precision}{digest}-{PREPROCESSING_VERSION}"

    @cached_property
    def session(self):  # onnxruntime.InferenceSession; imported lazily to keep import cheap
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Intra-op threads spin within a call (fast) but sleep as soon as it returns, so
        # they leave the cores to the decode workers (or a web server's threads) in between.
        options.add_session_config_entry("session.force_spinning_stop", "1")
        return ort.InferenceSession(str(self.backbone_path), sess_options=options, providers=["CPUExecutionProvider"])

    @cached_property
    def _io_names(self) -> tuple[str, str]:
        return self.session.get_inputs()[0].name, self.session.get_outputs()[0].name

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Runs the backbone on a float32 [N, 3, 224, 224] batch; returns [N, 1280]."""
        input_name, output_name = self._io_names
        return self.session.run([output_name], {input_name: pixels})[0]

    def transform_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Features for RGB images already decoded; returns float32 [N, FEATURE_DIM]."""
        return self._run(iter(images), len(images), decode=lambda image: image)

    def transform_bytes(self, blobs: Sequence[bytes]) -> np.ndarray:
        """Features for encoded images; raises ImageDecodeError on the first bad one."""
        return self._run(iter(blobs), len(blobs), decode=lambda blob: decode_image(blob, self.limits))

    def transform_paths(self, paths: Sequence[Path | str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Features for image files, calling ``progress(n)`` after each batch of n."""
        return self._run(
            iter(paths),
            len(paths),
            decode=lambda path: decode_image(Path(path).read_bytes(), self.limits),
            progress=progress,
        )

    def transform(
        self,
        items: Sequence[object],
        load: Callable[[object], Image.Image],
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Features for any items ``load`` turns into RGB images, loaded on the decode workers
        (training uses it to featurize altered copies of images without writing them out)."""
        return self._run(iter(items), len(items), decode=load, progress=progress)

    def _run(
        self,
        items: Iterator,
        count: int,
        decode: Callable[[object], Image.Image],
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Decodes each batch on ``threads`` workers, then runs the backbone on it.

        The phases alternate rather than overlap: the backbone already keeps every core
        busy, so a decode thread beside it only preempts one of its threads and stalls the
        others at the next barrier (``bench/featurize.py`` measures both; docs/featurizer.md).
        One input buffer is reused, so no batch-sized array is allocated per batch.
        """
        out = np.empty((count, FEATURE_DIM), dtype=np.float32)
        if count == 0:
            return out
        buffer = np.empty((min(self.batch_size, count), 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)

        def prepare(item: object, slot: np.ndarray) -> np.ndarray:
            return _preprocess_into(decode(item), slot)

        start = 0
        # One image (a typical web request) is prepared inline: starting and joining a pool
        # thread for it costs more than it saves.
        workers = min(self.threads, count)
        with ThreadPoolExecutor(workers, thread_name_prefix="decode") if workers > 1 else nullcontext() as pool:
            for batch in _chunks(items, self.batch_size):
                pixels = buffer[: len(batch)]
                hists = np.stack(list((pool.map if pool is not None else map)(prepare, batch, pixels)))
                start = self._fill(out, start, pixels, hists, progress)
        return out

    def _fill(self, out, start, pixels, hists, progress) -> int:
        end = start + len(pixels)
        out[start:end, :EMBEDDING_DIM] = self.embed(pixels)
        out[start:end, EMBEDDING_DIM:] = hists
        if progress:
            progress(len(pixels))
        return end

    def describe(self) -> dict:
        """A JSON-able description for model metadata."""
        meta_path = self.backbone_path.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        return {
            "backbone": "EfficientNet-Lite0 (ImageNet), ONNX Runtime",
            "precision": self.precision,
            "version": self.version,
            "input_size": INPUT_SIZE,
            "feature_dim": FEATURE_DIM,
            "source": meta.get("source_packages"),
        }


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
