"""Real processes against throwaway state (imported as a module: tests/e2e is on sys.path).

Every process a test starts gets its own process group and a tag in its environment.
Teardown kills the groups, then every process still carrying the tag: Prefect starts flow
runs in a new session (``start_new_session=True``), so those escape their worker's group.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TAG_VARIABLE = "VEHICLES_E2E_TAG"
MODEL = "vehicle-classifier"
# Inherited settings of these kinds would point a test at a developer's stores or server.
_DROPPED_PREFIXES = ("PREFECT_", "MLFLOW_", "PIPELINE_")
_DROPPED_NAMES = {"MODEL_NAME", "MODEL_ALIAS", "REDIS_URL", "VEHICLES_PROJECT_DIR", "PYTHONPATH"}
# A training run that proves the wiring, not the models: two quick candidates, a short search and
# no shifted copies in the refit (the shifted evaluation set is off in every sandbox).
QUICK_CANDIDATES = ("logistic_regression", "knn")
QUICK_TRAINING = ("--time-budget", "2", "--augment-copies", "0")
# Prefect's local API, started by a command that finds no PREFECT_API_URL, says so on stderr.
TEMPORARY_SERVER = "Starting temporary server"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 60) -> str:
    """The end of a log file, for failure messages."""
    if not path.exists():
        return f"({path} was not written)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Sandbox:
    """One folder holding every store a pipeline process writes, and the processes started on it.

    Attributes:
        root: the folder (MLflow SQLite store and artifacts, data, features, logs, Prefect home).
        env: the environment every process gets; tests add to a copy per call.
    """

    root: Path
    env: dict[str, str]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    _started: list[subprocess.Popen] = field(default_factory=list)
    _count: int = 0

    @classmethod
    def create(cls, root: Path, mlflow_db: Path, *, feature_cache: Path, prefect_api_url: str | None) -> Sandbox:
        """A sandbox whose MLflow store starts as a copy of ``mlflow_db``.

        Args:
            root: an empty folder for the sandbox.
            mlflow_db: the SQLite store to start from: the session's migrated one, or a trained
                store. A trained store's artifacts stay where they are: MLflow records absolute
                locations, and new runs write under new ids, so copies never see each other's files.
            feature_cache: the features folder; sharing it is safe, its entries are keyed by image
                content and featurizer version.
            prefect_api_url: the Prefect API commands use; None lets each command start Prefect's
                temporary local server.
        """
        shutil.copy(mlflow_db, root / "mlflow.db")
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_PREFIXES) and k not in _DROPPED_NAMES}
        env.update(
            MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
            MLFLOW_ARTIFACT_ROOT=str(root / "artifacts"),
            PIPELINE_DATA_DIR=str(root / "data"),
            PIPELINE_PREPARED_DIR=str(root / "prepared"),
            PIPELINE_FEATURE_CACHE_DIR=str(feature_cache),
            PIPELINE_LOG_DIR=str(root / "logs"),
            LABELS_DATABASE_URL=f"sqlite:///{root / 'review' / 'labels.db'}",
            REVIEW_IMAGES_URL=str(root / "review" / "images"),
            PIPELINE_SHIFTED_EVALUATION="false",  # no e2e test reads the robustness report
            PREFECT_HOME=str(root / "prefect"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # `mlflow models serve` execs `uvicorn`
            COLUMNS="200",  # off a terminal rich assumes 80 columns and wraps long candidate names
            NO_PROXY="127.0.0.1,localhost",
        )
        if prefect_api_url is not None:
            env["PREFECT_API_URL"] = prefect_api_url
        box = cls(root=root, env=env)
        box.env[TAG_VARIABLE] = box.tag
        return box

    @property
    def tracking_uri(self) -> str:
        return self.env["MLFLOW_TRACKING_URI"]

    def command(self, name: str) -> str:
        """A console script of this virtualenv (``vehicles``, ``prefect``, ``mlflow``)."""
        return str(BIN / name)

    def run(
        self,
        args: Sequence[str],
        *,
        timeout: float,
        cwd: Path | None = None,
        env: Mapping[str, str | None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs a command to completion in its own process group; kills what it leaves behind.

        ``env`` adds to the sandbox's environment; a None value removes that variable.

        Output goes to files, not pipes: a leftover grandchild holding a pipe open would
        otherwise keep the read from ever finishing.
        """
        out, err = self._log_paths(args)
        with out.open("w") as stdout, err.open("w") as stderr:
            process = self._popen(args, cwd, env, stdout, stderr)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                pytest.fail(
                    f"`{shlex.join(args)}` did not finish within {timeout} s\n"
                    f"stdout:\n{tail(out)}\nstderr:\n{tail(err)}"
                )
            finally:
                _kill_group(process)
        return subprocess.CompletedProcess(list(args), process.returncode, out.read_text(), err.read_text())

    def start(
        self, args: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str | None] | None = None
    ) -> tuple[subprocess.Popen, Path]:
        """Starts a long-running command; returns it and its combined log file. Stopped by ``close``."""
        log, _ = self._log_paths(args)
        with log.open("w") as output:
            process = self._popen(args, cwd, env, output, subprocess.STDOUT)
        self._started.append(process)
        return process, log

    def stop(self, process: subprocess.Popen) -> None:
        _kill_group(process)

    def close(self) -> None:
        """Stops every started process group, then anything else still carrying this sandbox's tag."""
        for process in self._started:
            _kill_group(process)
        _kill_tagged(self.tag)

    def _popen(self, args, cwd, env, stdout, stderr) -> subprocess.Popen:
        return subprocess.Popen(
            list(args),
            cwd=cwd or self.root,
            env={k: v for k, v in {**self.env, **(env or {})}.items() if v is not None},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )

    def _log_paths(self, args: Sequence[str]) -> tuple[Path, Path]:
        self._count += 1
        folder = self.root / "process-logs"
        folder.mkdir(exist_ok=True)
        stem = f"{self._count:02d}-" + "-".join(Path(a).name for a in args[:3]).replace("/", "_")[:60]
        return folder / f"{stem}.out", folder / f"{stem}.err"


@dataclass(frozen=True)
class TrainedStore:
    """A store that ``vehicles train`` left with version 1 as champion.

    Attributes:
        sandbox: where it trained: its MLflow store, logs and process logs.
        result: the ``vehicles train`` process that trained it.
        winner: the candidate version 1 holds.
    """

    sandbox: Sandbox
    result: subprocess.CompletedProcess[str]
    winner: str

    @property
    def db(self) -> Path:
        return self.sandbox.root / "mlflow.db"


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Polls ``url`` until it answers 200; fails early, with the log, if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"process exited with {process.returncode} before {url} answered:\n{tail(log)}")
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout} s:\n{tail(log)}")


def _kill_group(process: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM to the process group, SIGKILL to whatever is left after ``grace`` seconds."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _kill_tagged(tag: str, grace: float = 5) -> None:
    """Kills the processes whose environment carries ``tag`` (Linux: read from /proc)."""
    pids = _tagged_pids(tag)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.2)
        pids = _tagged_pids(tag)
    for pid in pids:
        _signal(pid, signal.SIGKILL)


def _tagged_pids(tag: str) -> list[int]:
    needle = f"{TAG_VARIABLE}={tag}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
