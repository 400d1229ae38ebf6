"""``vehicles train`` with bad flow parameters: one line saying what is wrong, exit 2, no server."""

from __future__ import annotations

import pytest
from rich.console import Console
from typer.testing import CliRunner

import cli.main
from cli.main import app

pytestmark = pytest.mark.unit

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.main, "console", Console(width=400, force_terminal=False, no_color=True))


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--metric", "bogus"], "metric: Input should be 'macro_f1', 'accuracy', 'log_loss' or 'ece'"),
        (["--time-budget", "0"], "time_budget_seconds: Input should be greater than 0"),
        (["--seed", "-1", "--metric", "f1"], "metric: Input should be"),
    ],
    ids=["metric", "budget", "two-at-once"],
)
def test_bad_parameter_ends_in_one_line(arguments: list[str], expected: str) -> None:
    result = runner.invoke(app, ["train", "--data", "does-not-matter", *arguments])

    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [result.output.strip()], "exactly one line"
    assert result.output.startswith("Invalid training parameters: ")
    assert expected in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), "a clean exit, not an escaped exception"


def test_every_broken_parameter_is_named() -> None:
    result = runner.invoke(app, ["train", "--seed", "-1", "--metric", "f1", "--time-budget", "-5"])

    assert result.exit_code == 2
    for name in ("metric", "seed", "time_budget_seconds"):
        assert f"{name}: " in result.output
