"""Deployments of the training flow: ``train`` (manual) and ``retrain-nightly`` (02:00 UTC).

Two ways to run them: registered on a process work pool (``vehicles deploy``, or
``prefect deploy --all`` with ``prefect.yaml``) and picked up by ``prefect worker start``;
or served from one long-lived process (``vehicles serve-flows``) on a single machine.
"""

from __future__ import annotations

from pathlib import Path

from prefect.schedules import Cron

from flows.training import train_pipeline

PROJECT_DIR = Path(__file__).resolve().parent.parent
ENTRYPOINT = "flows/training.py:train_pipeline"
NIGHTLY = Cron("0 2 * * *", timezone="UTC")
TRAIN = "train"
RETRAIN_NIGHTLY = "retrain-nightly"
DESCRIPTIONS = {
    TRAIN: "Train the six candidates and promote the winner if it beats the champion. Trigger from the UI with parameters.",
    RETRAIN_NIGHTLY: (
        "Nightly retrain on the configured training data (the data parameter, else PIPELINE_TRAINING_DATA); "
        "trains nothing when nothing is new since the champion, promotes only through the gate."
    ),
}
# What a scheduled run tells a skipped-run report about itself; `data` stays empty: the setting decides.
NIGHTLY_PARAMETERS = {"trigger": "schedule"}


def deploy_to_pool(work_pool: str, project_dir: Path = PROJECT_DIR) -> list[str]:
    """Registers both deployments on a (process) work pool; returns their ids."""
    flow = train_pipeline.from_source(source=str(project_dir), entrypoint=ENTRYPOINT)
    ids = [
        flow.deploy(name=TRAIN, work_pool_name=work_pool, description=DESCRIPTIONS[TRAIN], print_next_steps=False),
        flow.deploy(
            name=RETRAIN_NIGHTLY, work_pool_name=work_pool, schedules=[NIGHTLY], parameters=NIGHTLY_PARAMETERS,
            description=DESCRIPTIONS[RETRAIN_NIGHTLY], print_next_steps=False,
        ),
    ]
    return [str(i) for i in ids]


def serve_flows() -> None:
    """Runs both deployments from this process (no work pool or worker needed)."""
    from prefect import serve

    serve(
        train_pipeline.to_deployment(name=TRAIN, description=DESCRIPTIONS[TRAIN]),
        train_pipeline.to_deployment(
            name=RETRAIN_NIGHTLY, schedules=[NIGHTLY], parameters=NIGHTLY_PARAMETERS, description=DESCRIPTIONS[RETRAIN_NIGHTLY]
        ),
    )
