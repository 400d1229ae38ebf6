"""INT8 backbone: speed and embedding fidelity of static-quantization settings against float.

Usage:
    python bench/quantize.py [--repeats 5] [--batch 32] [--eval-sources 16] [--threads 1 2]

Each candidate of ``_candidates`` is built by ``quantize_backbone`` of scripts/export_backbone.py
into a temporary folder, calibrated on that script's calibration set. Calibration runs once per
method (onnxruntime's calibration cache), since the tensor ranges depend on nothing else.

The evaluation set is held out: the synthetic generator at ``EVALUATION_SEED`` (neither the
calibration seed nor the default dataset's), each image clean and under every shift kind.
Fidelity is each image's cosine between the candidate's embedding and float's. Speed is the
time of one ``--batch`` batch in a session configured as the featurizer configures its own,
repeats interleaved (every model and thread count once, then again) so that load from other
processes falls on all alike; the table gives the median.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export_backbone.py"
EVALUATION_SEED = 9203
FLOAT = "float32"


def _export_script() -> ModuleType:
    """scripts/export_backbone.py as a module (``scripts/`` is no package)."""
    spec = importlib.util.spec_from_file_location("export_backbone", SCRIPT)
    assert spec is not None and spec.loader is not None, f"cannot load {SCRIPT}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _candidates(script: ModuleType) -> list:
    """The settings compared, around U8S8 (ORT's advice for CPUs with VNNI): S8S8 (its first
    choice in general), per-tensor weights, reduce_range (its advice without VNNI), the other two
    calibration methods, QOperator, and the first blocks left in float."""
    u8s8 = script.INT8_SETTINGS  # the shipped choice, which the others vary
    return [
        u8s8,
        u8s8._replace(activation_type="QInt8"),
        u8s8._replace(per_channel=False),
        u8s8._replace(reduce_range=True),
        u8s8._replace(calibrate_method="Entropy"),
        u8s8._replace(calibrate_method="Percentile"),
        u8s8._replace(quant_format="QOperator"),
        u8s8._replace(float_blocks=1),
        u8s8._replace(float_blocks=2),
        u8s8._replace(float_blocks=3),
    ]


def main() -> None:
    args = _parse_args()
    console = Console()
    if not console.is_terminal:
        console.width = 180  # a piped table keeps one line per row
    script = _export_script()
    with console.status("Generating the calibration and evaluation images"):
        calibration = script.calibration_set()
        kinds, images = zip(*script.generated_images(EVALUATION_SEED, args.eval_sources), strict=True)
        evaluation = script.backbone_inputs(images)
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        models = {FLOAT: script.DEFAULT_OUT}
        build_seconds: dict[str, float] = {}
        for settings in _candidates(script):
            # redirect_stdout: onnxruntime's calibrators print their progress.
            with console.status(f"Building {settings.name}"), contextlib.redirect_stdout(io.StringIO()):
                path = Path(tmp) / f"{len(models)}.onnx"
                cache = Path(tmp) / f"{settings.calibrate_method}.json"
                start = time.perf_counter()
                script.quantize_backbone(script.DEFAULT_OUT, path, settings, calibration, cache_path=cache)
                build_seconds[settings.name] = time.perf_counter() - start
                models[settings.name] = path
        with console.status("Embedding the evaluation set"):
            embeddings = {name: script.embed(path, evaluation) for name, path in models.items()}
        with console.status("Timing"):
            load_before = os.getloadavg()[0]
            ms = _time_sessions(models, evaluation[: args.batch], args.threads, args.repeats)
            load = (load_before, os.getloadavg()[0])
        rows = {
            name: _fidelity(script, embeddings[name], embeddings[FLOAT], np.array(kinds))
            for name in models
            if name != FLOAT
        }
        sizes = {name: path.stat().st_size for name, path in models.items()}
    _report(console, args, ms, rows, build_seconds, sizes, len(calibration), len(evaluation), load)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each session")
    parser.add_argument("--batch", type=int, default=32, help="images per timed backbone call")
    parser.add_argument(
        "--eval-sources", type=int, default=16, help="generated images of the evaluation set, each also shifted"
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="intra-op thread counts")
    return parser.parse_args()


def _session(path: Path, threads: int) -> ort.InferenceSession:
    """A session configured as ``vehicle_model.featurizer.Featurizer.session`` configures its own."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _time_sessions(
    models: dict[str, Path], batch: np.ndarray, threads: list[int], repeats: int
) -> dict[tuple[str, int], float]:
    """Median milliseconds per image of each (model, threads), repeats interleaved.

    Each timed run has a fresh session after one warm-up run: a session's arena holds a batch's
    activations (hundreds of MB), too much to keep one per model on a shared machine.
    """
    seconds: dict[tuple[str, int], list[float]] = {(name, count): [] for name in models for count in threads}
    for _ in range(repeats):
        for name, count in seconds:
            session = _session(models[name], count)
            feed = {session.get_inputs()[0].name: batch}
            session.run(None, feed)
            start = time.perf_counter()
            session.run(None, feed)
            seconds[name, count].append(time.perf_counter() - start)
            del session
    return {key: 1000 * statistics.median(times) / len(batch) for key, times in seconds.items()}


def _fidelity(script: ModuleType, quantized: np.ndarray, reference: np.ndarray, kinds: np.ndarray) -> tuple:
    """Mean and min cosine to float, and the shift kind with the lowest mean with that mean."""
    similarity = script.cosines(quantized, reference)
    by_kind = {kind: float(similarity[kinds == kind].mean()) for kind in dict.fromkeys(kinds)}
    worst = min(by_kind, key=by_kind.__getitem__)
    return float(similarity.mean()), float(similarity.min()), worst, by_kind[worst]


def _cpu() -> str:
    """The CPU's model name and whether it has an 8-bit dot product (VNNI), from /proc/cpuinfo."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    vnni = [flag for flag in ("avx512_vnni", "avx_vnni", "amx_int8") if flag in flags]
    return f"{name} ({', '.join(vnni) or 'no VNNI'})"


def _report(console, args, ms, rows, build_seconds, sizes, n_calibration, n_evaluation, load) -> None:
    table = Table(
        title=(
            f"INT8 backbone candidates: ms per image (batch {args.batch}, median of {args.repeats} interleaved "
            f"repeats) and cosine to float on {n_evaluation} held-out images"
        )
    )
    table.add_column("settings", justify="left")
    for count in args.threads:
        table.add_column(f"ms/img {count}T", justify="right")
        table.add_column(f"x float {count}T", justify="right")
    for column in ("cos mean", "cos min", "worst shift (mean)", "build s", "MB"):
        table.add_column(column, justify="right")
    for name in (FLOAT, *rows):
        timing = []
        for count in args.threads:
            timing += [f"{ms[name, count]:.2f}", f"{ms[FLOAT, count] / ms[name, count]:.2f}"]
        if name == FLOAT:
            fidelity = ["1", "1", "", ""]
        else:
            mean, low, worst, worst_mean = rows[name]
            fidelity = [f"{mean:.4f}", f"{low:.4f}", f"{worst} ({worst_mean:.3f})", f"{build_seconds[name]:.0f}"]
        table.add_row(name, *timing, *fidelity, f"{sizes[name] / 1e6:.1f}")
    table.caption = (
        f"{_cpu()}, {len(os.sched_getaffinity(0))} usable cores, onnxruntime {ort.__version__}; "
        f"calibration {n_calibration} images, evaluation seed {EVALUATION_SEED}; build s includes "
        f"calibration only for the first candidate of each method; 1-min load average "
        f"{load[0]:.1f} before timing, {load[1]:.1f} after"
    )
    console.print(table)


if __name__ == "__main__":
    main()
