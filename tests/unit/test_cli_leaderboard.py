"""`vehicles train`'s leaderboard fits an 80-column terminal without cutting a name or a number."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from rich.console import Console

import cli.main
from tasks.training.candidates import CANDIDATES

pytestmark = pytest.mark.unit


def _summary() -> SimpleNamespace:
    leaderboard = [
        {
            "rank": rank,
            "candidate": name,
            "val.macro_f1": 0.91234 - rank / 50,
            "val.accuracy": 0.93456,
            "val.log_loss": 0.23456,
            "val.ece": 0.05,
            "fit_seconds": 1234.5678 if name == "hist_gradient_boosting" else 12.3456,
            "predict_ms_per_image": 0.12345,
            "model_bytes": 123456,
            "run_id": "0123456789abcdef",
        }
        for rank, name in enumerate(CANDIDATES, start=1)
    ]
    return SimpleNamespace(
        leaderboard=leaderboard,
        failed={},
        test_metrics={"test.macro_f1": 0.9},
        winner="logistic_regression",
        version="3",
        promoted=True,
        reason="no champion yet",
    )


@pytest.mark.parametrize("metric", ["macro_f1", "accuracy", "log_loss", "ece"])
def test_the_leaderboard_fits_80_columns_with_every_name_and_number_whole(monkeypatch, metric):
    console = Console(width=80, record=True)
    monkeypatch.setattr(cli.main, "console", console)
    cli.main._print_summary(_summary(), metric)
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 80
    rows = [line.split() for line in lines if line[:1].isdigit()]
    assert [row[:2] for row in rows] == [[str(rank), name] for rank, name in enumerate(CANDIDATES, start=1)]
    assert "1234.6" in {cell for row in rows for cell in row}


def test_the_leaderboard_says_which_candidate_the_time_budget_cut(monkeypatch):
    console = Console(width=80, record=True)
    monkeypatch.setattr(cli.main, "console", console)
    summary = _summary()
    summary.leaderboard[1]["stopped_early"] = "color: search stopped after 2 of 3 points"
    cli.main._print_summary(summary, "macro_f1")
    text = " ".join(console.export_text().split())
    assert f"{summary.leaderboard[1]['candidate']} stopped early (color: search stopped after 2 of 3 points)" in text
    assert f"{summary.leaderboard[0]['candidate']} stopped early" not in text
