"""The task runner is a setting: a process pool here, a Dask cluster when configured."""

from __future__ import annotations

from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

from flows.settings import PipelineSettings


def make_task_runner(settings: PipelineSettings, workers: int | None = None):
    """Builds the runner that fans out featurization shards and candidate fits."""
    workers = workers or settings.workers
    if settings.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=settings.dask_address)
    if settings.task_runner == "thread":
        return ThreadPoolTaskRunner(max_workers=workers)
    if settings.task_runner == "process":
        return ProcessPoolTaskRunner(max_workers=workers)
    raise ValueError(f"PIPELINE_TASK_RUNNER must be process, thread or dask; got {settings.task_runner!r}")
