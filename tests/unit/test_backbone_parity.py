"""Parity and integrity tests for the committed EfficientNet-Lite0 ONNX backbone.

Why: serving uses ``vehicle_model/assets/efficientnet_lite0.onnx`` through
onnxruntime while the backbone is defined in PyTorch by
``scripts/export_backbone.py``. These tests prove the committed bytes are the
ones the metadata describes, that they compute the same embedding as the
PyTorch wrapper, and that the batch axis really is dynamic.

Only the PyTorch comparison needs torch (marker ``export``, ``make test-export``); it is
imported (via the export script) inside a fixture on purpose, without
``pytest.importorskip``: that target installs the export extra, so a missing torch fails
the run rather than silently skipping the parity check. The integrity checks need only
onnxruntime and run with the unit tests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

pytestmark = pytest.mark.unit

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
SCRIPT_PATH: Path = REPO_ROOT / "scripts" / "export_backbone.py"
ONNX_PATH: Path = REPO_ROOT / "vehicle_model" / "assets" / "efficientnet_lite0.onnx"
META_PATH: Path = ONNX_PATH.with_suffix(".json")

INPUT_SIZE = 224
EMBEDDING_DIM = 1280
PARITY_RTOL = 1e-4


@pytest.fixture(scope="module")
def export_module() -> ModuleType:
    """Load ``scripts/export_backbone.py`` as a module (``scripts/`` is no package).

    Loading it imports torch; if torch is missing this errors, by design.
    """
    spec = importlib.util.spec_from_file_location("export_backbone", SCRIPT_PATH)
    assert spec is not None and spec.loader is not None, f"cannot load {SCRIPT_PATH}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def torch_wrapper(export_module: ModuleType) -> Any:
    """The PyTorch reference embedder, built exactly as the exporter builds it."""
    wrapper = export_module.build_wrapper()
    assert not wrapper.training, "build_wrapper() must return an eval-mode module"
    return wrapper


@pytest.fixture(scope="module")
def ort_session() -> Any:
    """An onnxruntime CPU session on the committed ONNX file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(ONNX_PATH), sess_options=options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def metadata() -> dict[str, Any]:
    """The metadata JSON committed beside the ONNX file."""
    return json.loads(META_PATH.read_text(encoding="utf-8"))


def _synthetic_images() -> np.ndarray:
    """Make 4 deterministic, image-like RGB pictures as float32 ``[4, 3, 224, 224]``.

    Why synthetic: no image data set ships with the repo, and natural-ish
    structure (gradients, edges, filled shapes, a crude car) exercises the
    network far better than uniform noise while staying reproducible.
    Drawn at 320x240 and resized to 224x224, as real inputs would be.
    """
    width, height = 320, 240
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]

    # 1. Diagonal colour gradient.
    grad = np.stack(
        [np.broadcast_to(xs, (height, width)), np.broadcast_to(ys, (height, width)), (1.0 - (xs + ys) / 2.0)],
        axis=-1,
    )
    img1 = Image.fromarray((grad * 255).astype(np.uint8), "RGB")

    # 2. Radial gradient with a bright disc and a dark ring.
    radius = np.sqrt((xs - 0.5) ** 2 + (ys - 0.5) ** 2)
    radial = np.clip(1.0 - radius * 1.6, 0.0, 1.0)
    img2 = Image.fromarray(
        (np.stack([radial, radial**2, 0.3 + 0.5 * radial], axis=-1) * 255).astype(np.uint8),
        "RGB",
    )
    draw2 = ImageDraw.Draw(img2)
    draw2.ellipse((120, 80, 200, 160), fill=(250, 240, 60), outline=(20, 20, 20), width=6)

    # 3. Checkerboard with overlapping rectangles and a triangle.
    checker = (np.arange(width)[None, :] // 20 + np.arange(height)[:, None] // 20) % 2
    img3 = Image.fromarray((checker * 200 + 30).astype(np.uint8), "L").convert("RGB")
    draw3 = ImageDraw.Draw(img3)
    draw3.rectangle((30, 40, 150, 200), fill=(200, 30, 30))
    draw3.rectangle((110, 90, 290, 170), fill=(30, 160, 60))
    draw3.polygon([(160, 20), (300, 220), (40, 220)], outline=(20, 40, 220), width=5)

    # 4. A crude car on a road under a sky gradient.
    sky = np.stack(
        [
            np.broadcast_to(0.4 + 0.4 * ys, (height, width)),
            np.broadcast_to(0.6 + 0.3 * ys, (height, width)),
            np.broadcast_to(np.full_like(ys, 0.95), (height, width)),
        ],
        axis=-1,
    )
    img4 = Image.fromarray((sky * 255).astype(np.uint8), "RGB")
    draw4 = ImageDraw.Draw(img4)
    draw4.rectangle((0, 170, width, height), fill=(70, 70, 75))
    draw4.rectangle((50, 110, 270, 170), fill=(180, 20, 40))
    draw4.polygon([(100, 110), (130, 70), (210, 70), (240, 110)], fill=(160, 15, 35))
    draw4.polygon([(112, 108), (136, 76), (168, 76), (168, 108)], fill=(170, 210, 235))
    draw4.ellipse((70, 145, 120, 195), fill=(15, 15, 15))
    draw4.ellipse((200, 145, 250, 195), fill=(15, 15, 15))

    arrays = [
        np.asarray(img.resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR), dtype=np.float32) / 255.0
        for img in (img1, img2, img3, img4)
    ]
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2))


@pytest.mark.export
def test_onnx_matches_pytorch(torch_wrapper: Any, ort_session: Any, export_module: ModuleType) -> None:
    """onnxruntime on the committed file reproduces the PyTorch embedding.

    Metric: ``max_abs_diff / max(|torch_embedding|)`` over the whole batch,
    i.e. the worst element error relative to the embedding's scale, must be
    <= 1e-4. Why this definition: per-element relative error is meaningless
    for the many near-zero activations after ReLU6 and pooling, while scaling
    by the largest magnitude gives a stable, interpretable bound (float32
    reordering noise is ~1e-6 here).
    """
    import torch

    images = _synthetic_images()
    assert images.shape == (4, 3, INPUT_SIZE, INPUT_SIZE)
    assert images.dtype == np.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0

    with torch.no_grad():
        expected = torch_wrapper(torch.from_numpy(images)).numpy()
    (actual,) = ort_session.run([export_module.OUTPUT_NAME], {export_module.INPUT_NAME: images})

    assert expected.shape == actual.shape == (4, EMBEDDING_DIM)
    assert np.isfinite(actual).all()
    scale = float(np.max(np.abs(expected)))
    assert scale > 0.0
    rel = float(np.max(np.abs(actual - expected))) / scale
    assert rel <= PARITY_RTOL, f"max relative diff {rel:.3e} > {PARITY_RTOL}"

    # The embedding must depend on the image: distinct pictures, distinct vectors.
    pairwise = np.abs(actual[:, None, :] - actual[None, :, :]).max(axis=-1)
    off_diagonal = pairwise[~np.eye(len(actual), dtype=bool)]
    assert float(off_diagonal.min()) > 100 * PARITY_RTOL * scale


def test_sha256_matches_metadata(metadata: dict[str, Any]) -> None:
    """The committed ONNX bytes are exactly those the metadata JSON pins.

    Why: a re-export or a corrupted/LFS-pointer checkout must be caught
    before anything relies on the embedding.
    """
    digest = hashlib.sha256(ONNX_PATH.read_bytes()).hexdigest()
    assert digest == metadata["sha256"]
    assert ONNX_PATH.stat().st_size == metadata["file_size_bytes"]
    assert metadata["input_name"] == "images"
    assert metadata["output_name"] == "embedding"
    assert metadata["input_size"] == INPUT_SIZE
    assert metadata["embedding_dim"] == EMBEDDING_DIM


def test_batch_axis_is_dynamic(ort_session: Any, metadata: dict[str, Any]) -> None:
    """Batches of 1 and 3 both run and yield ``[n, 1280]``.

    Why: the exporter traced with batch 2; a batch axis accidentally frozen
    during tracing would only show up in production with other batch sizes.
    """
    (graph_input,) = ort_session.get_inputs()
    (graph_output,) = ort_session.get_outputs()
    assert graph_input.name == metadata["input_name"]
    assert graph_output.name == metadata["output_name"]
    assert isinstance(graph_input.shape[0], str), graph_input.shape
    assert graph_input.shape[1:] == [3, INPUT_SIZE, INPUT_SIZE]

    images = _synthetic_images()
    for batch in (1, 3):
        (out,) = ort_session.run([graph_output.name], {graph_input.name: images[:batch]})
        assert out.shape == (batch, EMBEDDING_DIM)
        assert out.dtype == np.float32
