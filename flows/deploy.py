"""Deployments, read from ``prefect.yaml`` (their one definition).

``prefect deploy --all`` reads the same file, so names, schedules, parameters, triggers and
descriptions cannot disagree between the two ways of registering them. Two ways to run them:
registered on a process work pool (``vehicles deploy``) and picked up by
``prefect worker start``; or served from one long-lived process (``vehicles serve-flows``).
The ``retrain-on-drift`` automation is a trigger of ``retrain-nightly`` declared there too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow
from prefect.events import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron

CHECKOUT = Path(__file__).resolve().parent.parent


def project_dir() -> Path:
    """Where workers run the flows from: ``VEHICLES_PROJECT_DIR`` (``/app`` in the worker image), else this checkout."""
    return Path(os.environ.get("VEHICLES_PROJECT_DIR") or CHECKOUT).resolve()


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of ``prefect.yaml``'s ``deployments`` list (the fields this project uses)."""

    name: str
    entrypoint: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[Cron] = field(default_factory=list)
    triggers: list[DeploymentEventTrigger] = field(default_factory=list)

    def options(self) -> dict[str, Any]:
        """What ``Flow.deploy`` and ``Flow.to_deployment`` take from this spec."""
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "schedules": self.schedules,
            "triggers": self.triggers,
        }


def load_specs(path: Path | None = None) -> list[DeploymentSpec]:
    """The deployments declared in ``prefect.yaml`` (the project folder's by default)."""
    document = yaml.safe_load((path or project_dir() / "prefect.yaml").read_text(encoding="utf-8"))
    return [
        DeploymentSpec(
            name=entry["name"],
            entrypoint=entry["entrypoint"],
            description=entry.get("description", ""),
            parameters=dict(entry.get("parameters") or {}),
            schedules=[Cron(s["cron"], timezone=s.get("timezone", "UTC")) for s in entry.get("schedules") or []],
            triggers=[DeploymentEventTrigger(**trigger) for trigger in entry.get("triggers") or []],
        )
        for entry in document["deployments"]
    ]


def deploy_to_pool(work_pool: str, folder: Path | None = None) -> list[str]:
    """Registers every deployment on a (process) work pool, run from ``folder``; returns their ids.

    ``folder`` (default :func:`project_dir`) is baked into each deployment's pull step: in a
    container stack, register from inside the worker image, not from the host.
    """
    folder = folder or project_dir()
    ids = []
    for spec in load_specs(folder / "prefect.yaml"):
        flow = Flow.from_source(source=str(folder), entrypoint=spec.entrypoint)
        ids.append(flow.deploy(work_pool_name=work_pool, print_next_steps=False, **spec.options()))
    return [str(i) for i in ids]


def serve_flows() -> None:
    """Runs every deployment from this process (no work pool or worker needed)."""
    from prefect import serve

    folder = project_dir()
    serve(
        *(
            load_flow_from_entrypoint(str(folder / spec.entrypoint)).to_deployment(**spec.options())
            for spec in load_specs(folder / "prefect.yaml")
        )
    )
