"""Deployments: ``train`` (manual), ``retrain-nightly`` (02:00 UTC and on drift), ``monitor-drift-hourly``.

Two ways to run them: registered on a process work pool (``vehicles deploy``, or
``prefect deploy --all`` with ``prefect.yaml``) and picked up by ``prefect worker start``;
or served from one long-lived process (``vehicles serve-flows``) on a single machine.
"""

from __future__ import annotations

from pathlib import Path

from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron

from flows.monitoring import monitor_drift
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

# Monitoring: the hourly drift check, and the automation (a trigger on the retrain deployment)
# that runs the retrain when the check emits vehicle.drift.detected, passing the drift context.
MONITOR_ENTRYPOINT = "flows/monitoring.py:monitor_drift"
MONITOR_HOURLY = "monitor-drift-hourly"
HOURLY = Cron("0 * * * *", timezone="UTC")
MONITOR_DESCRIPTION = "Hourly drift check of the prediction log per region against the champion's reference."
RETRAIN_ON_DRIFT = "retrain-on-drift"


def retrain_on_drift() -> DeploymentEventTrigger:
    """Runs the retrain deployment once per ``vehicle.drift.detected`` event, naming the regions."""
    return DeploymentEventTrigger(
        name=RETRAIN_ON_DRIFT,
        description="Retrain when the drift monitor flags regions; the run says what to label if nothing new arrived.",
        expect={"vehicle.drift.detected"},
        match={"prefect.resource.id": "vehicle.monitoring.*"},
        parameters={"trigger": "drift", "drift_regions": "{{ event.payload.regions }}"},
    )


def deploy_to_pool(work_pool: str, project_dir: Path = PROJECT_DIR) -> list[str]:
    """Registers every deployment on a (process) work pool; returns their ids."""
    flow = train_pipeline.from_source(source=str(project_dir), entrypoint=ENTRYPOINT)
    ids = [
        flow.deploy(name=TRAIN, work_pool_name=work_pool, description=DESCRIPTIONS[TRAIN], print_next_steps=False),
        flow.deploy(
            name=RETRAIN_NIGHTLY, work_pool_name=work_pool, schedules=[NIGHTLY], parameters=NIGHTLY_PARAMETERS,
            description=DESCRIPTIONS[RETRAIN_NIGHTLY], print_next_steps=False, triggers=[retrain_on_drift()],
        ),
        monitor_drift.from_source(source=str(project_dir), entrypoint=MONITOR_ENTRYPOINT).deploy(
            name=MONITOR_HOURLY, work_pool_name=work_pool, schedules=[HOURLY], description=MONITOR_DESCRIPTION,
            print_next_steps=False,
        ),
    ]
    return [str(i) for i in ids]


def serve_flows() -> None:
    """Runs every deployment from this process (no work pool or worker needed)."""
    from prefect import serve

    serve(
        train_pipeline.to_deployment(name=TRAIN, description=DESCRIPTIONS[TRAIN]),
        train_pipeline.to_deployment(
            name=RETRAIN_NIGHTLY, schedules=[NIGHTLY], parameters=NIGHTLY_PARAMETERS, description=DESCRIPTIONS[RETRAIN_NIGHTLY],
            triggers=[retrain_on_drift()],
        ),
        monitor_drift.to_deployment(name=MONITOR_HOURLY, schedules=[HOURLY], description=MONITOR_DESCRIPTION),
    )
