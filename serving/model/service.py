"""The model being served: loaded from the registry, followed by alias, swapped atomically.

A request takes a snapshot of the current ``LoadedModel`` and uses it to the end, so a swap
(one reference assignment) never changes the model under a running request: in-flight
requests finish on the old version, new ones start on the new. Registry calls and loading
run on a dedicated thread, inference on a few batching threads, so neither blocks the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from prometheus_client import Counter

from serving.model.batching import BatchingExecutor
from serving.model.runtime import Inferred, warm_up
from serving.model.source import LoadedModel, ModelSource, NoChampion, RegistryUnavailable
from serving.monitoring.metrics import ServingMetrics
from vehicle_model.featurizer import usable_cores
from vehicle_model.images import ImageLimits

T = TypeVar("T")
RefreshOutcome = Literal["loaded", "unchanged", "failed", "skipped", "no_champion", "unreachable"]
logger = logging.getLogger("serving.model")


class ModelUnavailable(Exception):
    """No model is loaded; the message says why and how to get one."""


class LifecycleMetrics(Protocol):
    """What a ``ModelService`` records: ``ServingMetrics`` for the champion, the shadow's own for
    the shadow, so the two never overwrite each other's series."""

    model_reloads: Counter
    model_reload_failures: Counter

    def serving(self, name: str, version: str, alias: str) -> None: ...

    def released(self) -> None: ...


@dataclass(frozen=True)
class RefreshResult:
    """What one poll of the alias did.

    Attributes:
        outcome: ``loaded`` (swapped in), ``unchanged``, ``failed`` (load failed; the old
            model stays), ``skipped`` (that version failed recently), ``no_champion``,
            ``unreachable``.
        version: the version the alias pointed to, when known.
        serving: the version being served afterwards.
        detail: a human-readable explanation.
    """

    outcome: RefreshOutcome
    version: str | None
    serving: str | None
    detail: str


class ModelService:
    """Holds the served model and keeps it in line with the registry alias.

    Args:
        source: the registry view; None serves ``model`` forever (tests, fixed deployments).
        model: a model to serve from the start (already warmed up by the caller).
        inference_threads: inference calls allowed at once (bounded to the cores).
        onnx_threads: ONNX Runtime threads each loaded model uses.
        batch_images: most images one inference call takes from the requests waiting.
        metrics: where reloads, failures and the served version are recorded.
        poll_interval: seconds between alias checks.
        registry_timeout: longest wait for one registry lookup.
        retry_failed_after: seconds before a version that failed to load is tried again
            (``/admin/reload`` retries at once).
        load_timeout: longest one download + load + warm-up may take before it counts as failed.
        prepare: applied to each freshly loaded version before its warm-up (after the thread
            layout); the shadow uses it to take the champion's featurizer instead of its own.
        role: what the logs say this service does with its version (``serving``, ``shadowing``).
        release_when_absent: drop the held version when the registry says the alias is gone
            (the shadow: a promoted challenger loses its alias and must stop being compared
            with itself); the champion keeps serving what it has.
    """

    def __init__(
        self,
        source: ModelSource | None,
        model: LoadedModel | None = None,
        *,
        inference_threads: int = 1,
        onnx_threads: int | None = None,
        batch_images: int = 32,
        metrics: LifecycleMetrics | None = None,
        poll_interval: float = 30.0,
        registry_timeout: float = 30.0,
        retry_failed_after: float = 300.0,
        load_timeout: float = 600.0,
        prepare: Callable[[LoadedModel], LoadedModel] | None = None,
        role: str = "serving",
        release_when_absent: bool = False,
    ) -> None:
        self.source = source
        self.metrics = metrics or ServingMetrics()
        self.prepare = prepare
        self.role = role
        self.release_when_absent = release_when_absent
        self.onnx_threads = onnx_threads
        self.poll_interval = poll_interval
        self.registry_timeout = registry_timeout
        self.retry_failed_after = retry_failed_after
        self.load_timeout = load_timeout
        self._inference = BatchingExecutor(inference_threads, batch_images)
        self._registry = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry")
        self._refresh_lock = asyncio.Lock()
        self._failed: dict[str, float] = {}
        self._poller: asyncio.Task | None = None
        self._model: LoadedModel | None = None
        self._problem = "the model is loading" if model is None else None
        if model is not None:
            self._install(model)

    @property
    def current(self) -> LoadedModel | None:
        return self._model

    @property
    def problem(self) -> str | None:
        """Why there is no model to serve, or None when there is one."""
        return None if self._model is not None else self._problem

    def require(self) -> LoadedModel:
        """The model to use for one request (a snapshot: keep it for the whole request).

        Raises:
            ModelUnavailable: nothing is loaded yet; the message says why.
        """
        model = self._model
        if model is None:
            raise ModelUnavailable(self._problem or "no model is loaded")
        return model

    async def infer(self, fn: Callable[..., T], *args: object) -> T:
        """Runs blocking model code on an inference thread, by itself."""
        return await self._inference.run(fn, *args)

    async def predict(self, model: LoadedModel, blobs: Sequence[bytes], limits: ImageLimits) -> Inferred:
        """``decode_and_predict`` on an inference thread, batched with other requests waiting for one.

        A call that finds the other inference threads idle and nobody waiting runs on the
        model's ``wide`` view (every core), any other on its own share of the cores.
        """
        return await self._inference.predict(model.classifier, blobs, limits, wide=model.wide)

    async def start(self, wait: float) -> None:
        """Starts following the alias; waits up to ``wait`` s for the first load.

        The app answers either way: if the first load is slow or impossible, ``/ready`` says
        why and the model is swapped in whenever a later poll succeeds. ``wait`` 0 does not wait.
        """
        if self.source is None:
            return
        first_attempt = asyncio.Event()
        self._poller = asyncio.create_task(self._follow(first_attempt), name=f"model-poller-{self.source.alias}")
        if wait <= 0:
            return
        try:
            async with asyncio.timeout(wait):
                await first_attempt.wait()
        except TimeoutError:
            logger.warning("no model after %.0f s at startup; still trying in the background", wait)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        self._inference.close()
        self._registry.shutdown(wait=False, cancel_futures=True)

    async def _follow(self, first_attempt: asyncio.Event) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.exception("model poll failed")
            finally:
                first_attempt.set()
            await asyncio.sleep(self.poll_interval)

    async def refresh(self, force: bool = False) -> RefreshResult:
        """Checks the alias once; loads, warms and swaps in a new version when it moved.

        Args:
            force: retry a version even if it failed to load recently.
        """
        if self.source is None:
            serving = self._model.version if self._model else None
            return RefreshResult("unchanged", serving, serving, "no registry configured")
        async with self._refresh_lock:
            try:
                version = await self._ask_registry(self.source.alias_version)
            except NoChampion as exc:
                return self._without_version("no_champion", self._no_champion_message(exc))
            except RegistryUnavailable as exc:
                return self._without_version("unreachable", f"model registry unreachable ({exc}); {self._retry_note}")
            if self._model is not None and self._model.version == version:
                return RefreshResult("unchanged", version, version, f"serving version {version}")
            failed_at = self._failed.get(version)
            if not force and failed_at is not None and time.monotonic() - failed_at < self.retry_failed_after:
                return RefreshResult("skipped", version, self._serving, f"version {version} failed to load recently")
            return await self._load(version)

    async def reload(self) -> RefreshResult:
        """Loads the version held now once more, so ``prepare`` decides afresh (the shadow does
        when the champion it shares a featurizer with has changed); a failure keeps the one held."""
        async with self._refresh_lock:
            if self._model is None or self.source is None:
                return RefreshResult("unchanged", self._serving, self._serving, "nothing to reload")
            return await self._load(self._model.version)

    async def _load(self, version: str) -> RefreshResult:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            # Bounded, so a hung download cannot hold the refresh lock (and every later poll) forever.
            # Timeout scopes here, not ``wait_for``: on Python 3.11 that swallows a cancel landing
            # just as the call finishes, and the poller, cancelled by ``close``, would poll on.
            async with asyncio.timeout(self.load_timeout):
                model = await loop.run_in_executor(self._registry, self._load_and_warm, version)
        except TimeoutError:
            self._failed[version] = time.monotonic()
            self.metrics.model_reload_failures.inc()
            detail = f"version {version} did not load within {self.load_timeout:g} s; still {self.role} {self._serving}"
            logger.error(detail)
            if self._model is None:
                self._problem = f"{detail}; {self._retry_note}"
            return RefreshResult("failed", version, self._serving, detail)
        except Exception as exc:
            self._failed[version] = time.monotonic()
            self.metrics.model_reload_failures.inc()
            logger.exception("version %s failed to load; still %s %s", version, self.role, self._serving)
            detail = f"version {version} failed to load: {type(exc).__name__}: {exc}"
            if self._model is None:
                self._problem = f"{detail}; {self._retry_note}"
            return RefreshResult("failed", version, self._serving, detail)
        old = self._serving
        self._install(model)
        self._failed.pop(version, None)
        self.metrics.model_reloads.inc()
        seconds = time.perf_counter() - started
        logger.info(
            "%s version %s (was %s), loaded in %.2f s",
            self.role,
            version,
            old,
            seconds,
            extra={"model_version": version, "previous_version": old},
        )
        return RefreshResult("loaded", version, version, f"swapped {old} -> {version}")

    def _load_and_warm(self, version: str) -> LoadedModel:
        assert self.source is not None
        # The download lives only until the warm-up has read the weights: no folder per reload.
        with tempfile.TemporaryDirectory(prefix=f"model-v{version}-") as folder:
            model = self.source.load(version, Path(folder))
            if self.onnx_threads is not None:
                model = with_thread_layout(model, self.onnx_threads, usable_cores())
            if self.prepare is not None:
                model = self.prepare(model)
            for classifier in (model.classifier, model.wide):
                if classifier is not None:
                    # The backbone never sees more than one featurizer batch per call.
                    warm_up(classifier, min(self._inference.max_images, classifier.featurizer.batch_size))
        return model

    def _install(self, model: LoadedModel) -> None:
        self._model = model  # the atomic swap: requests hold their own snapshot
        self._problem = None
        self.metrics.serving(model.name, model.version, model.alias)

    async def _ask_registry(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.registry_timeout):
                return await loop.run_in_executor(self._registry, call)
        except TimeoutError as exc:
            raise RegistryUnavailable(f"no answer within {self.registry_timeout:.0f} s") from exc

    def _without_version(self, outcome: RefreshOutcome, detail: str) -> RefreshResult:
        if self._model is not None and outcome == "no_champion" and self.release_when_absent:
            logger.info("%s; no longer %s version %s", detail, self.role, self._model.version)
            self._model = None
            self.metrics.released()
        if self._model is None:
            self._problem = detail
        else:
            logger.warning("%s; still %s version %s", detail, self.role, self._model.version)
        return RefreshResult(outcome, None, self._serving, detail)

    @property
    def _serving(self) -> str | None:
        return self._model.version if self._model else None

    @property
    def _retry_note(self) -> str:
        return f"retrying every {self.poll_interval:g} s"

    def _no_champion_message(self, exc: Exception) -> str:
        assert self.source is not None
        return (
            f"no model to serve: {exc} in the registry at {_redact(self.source.tracking_uri)}. "
            f"Train and promote one with `vehicles train` (or set the '{self.source.alias}' alias on a "
            f"version); it is picked up within {self.poll_interval:g} s"
        )


def _redact(uri: str) -> str:
    """The URI without credentials."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def with_thread_layout(model: LoadedModel, onnx_threads: int, cores: int) -> LoadedModel:
    """``model`` with ``onnx_threads`` per call, plus a ``wide`` view on all ``cores`` when that is more.

    Set before the first inference creates the ONNX sessions. Under load every inference
    thread runs its own call on its share of the cores; a lone request would leave the other
    cores idle, so it runs on a second session of the same backbone that uses them all (two
    sessions: ONNX Runtime fixes a session's threads when it is created).
    """
    featurizer = model.classifier.featurizer
    featurizer.threads = onnx_threads
    if cores <= onnx_threads:
        return dataclasses.replace(model, wide=None)
    wide = copy.copy(featurizer)  # without the session (``Featurizer.__getstate__``)
    wide.threads = cores
    # replace, not a new classifier: the wide view must keep the heads and the decision policy.
    return dataclasses.replace(model, wide=dataclasses.replace(model.classifier, featurizer=wide))
