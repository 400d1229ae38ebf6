"""The data commands of the ``vehicles`` CLI: ``generate-data`` and ``validate``."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

import cli.main
from cli.main import app

pytestmark = pytest.mark.unit

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A console wide enough that table cells (long tmp paths) are not folded across lines."""
    monkeypatch.setattr(cli.main, "console", Console(width=400, force_terminal=False, no_color=True))


def write_dataset(root: Path, broken: bool) -> None:
    """Two classes of six; when ``broken``, five different problems are added."""
    images = root / "img"
    images.mkdir(parents=True)
    rows = []
    for index in range(12):
        label = "car" if index < 6 else "bus"
        path = images / f"{label}-{index}.png"
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path)
        rows.append((f"img/{path.name}", label, "train"))
    if broken:
        truncated = images / "truncated.png"
        truncated.write_bytes((images / "car-0.png").read_bytes()[:100])
        shutil.copy(images / "car-1.png", images / "leak.png")
        Image.new("RGB", (8, 8), (1, 2, 3)).save(images / "tractor.png")
        Image.new("RGB", (8, 8), (4, 5, 6)).save(images / "van.png")
        rows += [
            ("img/gone.png", "car", "train"),
            ("img/truncated.png", "bus", "train"),
            ("img/tractor.png", "tractor", "train"),
            ("img/van.png", "van", "train"),
            ("img/leak.png", "car", "test"),
        ]
    with (root / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label", "split"])
        writer.writerows(rows)


def test_validate_reports_every_problem_and_exits_1(tmp_path: Path) -> None:
    write_dataset(tmp_path, broken=True)

    result = runner.invoke(app, ["validate", str(tmp_path), "--labels", "label=car,bus,van"])

    assert result.exit_code == 1, result.output
    for check in (
        "file_exists",
        "decodes",
        "known_label(bus, car, van)",
        "at_least_5_images",
        "no_content_in_two_splits",
    ):
        assert check in result.output
    for subject in ("gone.png", "truncated.png", "tractor", "class:van", "leak.png"):
        assert subject in result.output


def test_validate_clean_dataset_exits_0(tmp_path: Path) -> None:
    write_dataset(tmp_path, broken=False)

    result = runner.invoke(app, ["validate", str(tmp_path)])

    assert result.exit_code == 0, result.output
    assert "OK: 12 images, attributes label" in result.output


def test_validate_unloadable_path_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope")])

    assert result.exit_code == 1
    assert "Cannot load dataset" in result.output


def test_validate_rejects_malformed_labels_option(tmp_path: Path) -> None:
    write_dataset(tmp_path, broken=False)

    result = runner.invoke(app, ["validate", str(tmp_path), "--labels", "car,bus"])

    assert result.exit_code == 2
    assert "ATTRIBUTE=a,b,c" in result.output


def test_generate_data_writes_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "synthetic"

    result = runner.invoke(app, ["generate-data", str(out), "--n", "10", "--seed", "1"])

    assert result.exit_code == 0, result.output
    with (out / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10
    assert set(rows[0]) == {"image", "vehicle_type", "color"}
    assert all((out / row["image"]).is_file() for row in rows)
