"""The live stack as real processes on loopback: PostgreSQL-backed Prefect and MLflow servers,
Redis, a label store on PostgreSQL with a folder of kept images, and throwaway databases. Every
process and database is removed at the end, even on failure.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from e2e_support import REPO, Sandbox, free_port, wait_for_http

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
PROXY_RULES = REPO / "scripts" / "nginx.conf"
# A main configuration around the stack's proxy rules that runs from one folder as this user.
NGINX_MAIN = """daemon off;
{user}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$request $status $upstream_addr';
    access_log {folder}/access.log upstream;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
{rules}
}}
"""


@dataclass(frozen=True)
class Stack:
    """Where the stack's servers answer, and the sandbox holding their processes and files."""

    sandbox: Sandbox
    prefect_api: str
    mlflow_uri: str
    redis_url: str
    labels_url: str
    review_images: Path

    @property
    def env(self) -> dict[str, str]:
        """What a pipeline process needs to use the stack (no local stores)."""
        return {
            "PREFECT_API_URL": self.prefect_api,
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MLFLOW_UI_URL": self.mlflow_uri,
            **self.labels_env,
        }

    @property
    def labels_env(self) -> dict[str, str]:
        """Where serving keeps images and labels, and the worker and the CLI read them."""
        return {"LABELS_DATABASE_URL": self.labels_url, "REVIEW_IMAGES_URL": str(self.review_images)}


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", f"{POSTGRES}/postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        timeout=60,
        capture_output=True,
    )


@pytest.fixture(scope="session")
def databases() -> Iterator[dict[str, str]]:
    """Three throwaway PostgreSQL databases (MLflow, Prefect, labels), dropped at the end."""
    names = {kind: f"vehicles_stack_{uuid.uuid4().hex[:10]}_{kind}" for kind in ("mlflow", "prefect", "labels")}
    created = []
    try:
        for name in names.values():
            _psql(f"CREATE DATABASE {name}")
            created.append(name)
        yield {kind: f"{POSTGRES}/{name}" for kind, name in names.items()}
    finally:
        for name in created:
            _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, _migrated_mlflow_db: Path, databases: dict[str, str]
) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    # Its own servers (Prefect's is started below) and its own feature cache: the stack runs as
    # deployed, shifted evaluation set included.
    box = Sandbox.create(root, _migrated_mlflow_db, feature_cache=root / "features", prefect_api_url=None)
    box.env.pop("PIPELINE_SHIFTED_EVALUATION")
    try:
        redis_port, mlflow_port, prefect_port = free_port(), free_port(), free_port()
        redis, redis_log = box.start(
            [
                "redis-server",
                "--port",
                str(redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(box.root),
            ]
        )
        prefect, prefect_log = box.start(
            [box.command("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
            env={
                "PREFECT_API_DATABASE_CONNECTION_URL": databases["prefect"].replace(
                    "postgresql:", "postgresql+asyncpg:"
                ),
                # Where the browser UI calls the API (its default is port 4200).
                "PREFECT_UI_API_URL": f"http://127.0.0.1:{prefect_port}/api",
            },
        )
        # One worker: uvicorn's supervisor kills workers that start slowly on a loaded machine.
        mlflow, mlflow_log = box.start(
            [
                box.command("mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
                "--backend-store-uri",
                databases["mlflow"],
                "--artifacts-destination",
                str(box.root / "mlartifacts"),
                "--serve-artifacts",
            ]
        )
        wait_for_http(f"http://127.0.0.1:{mlflow_port}/health", mlflow, mlflow_log, timeout=240)
        wait_for_http(f"http://127.0.0.1:{prefect_port}/api/health", prefect, prefect_log, timeout=240)
        yield Stack(
            box,
            f"http://127.0.0.1:{prefect_port}/api",
            f"http://127.0.0.1:{mlflow_port}",
            f"redis://127.0.0.1:{redis_port}/0",
            databases["labels"],
            box.root / "review",
        )
    finally:
        box.close()


def start_proxy(sandbox: Sandbox, upstreams: list[str]) -> tuple[str, Path]:
    """Debian's nginx with the stack's own proxy rules (``scripts/nginx.conf``) in front of
    ``upstreams`` (``host:port``, in place of ``serving-1:8000``, ``serving-2:8000``).

    Returns:
        The proxy's URL, and its access log (one line per request: the request, its status and
        the replica that answered it).
    """
    folder = sandbox.root / "proxy"
    folder.mkdir()
    port = free_port()
    replicas = iter(upstreams)
    rules, servers = re.subn(r"server serving-\d+:8000", lambda _: f"server {next(replicas)}", PROXY_RULES.read_text())
    rules, listens = re.subn(r"listen 8000;", f"listen 127.0.0.1:{port};", rules)
    assert (servers, listens) == (len(upstreams), 1), f"{PROXY_RULES} no longer has the upstreams and port expected"
    # As root the workers would switch to `nobody`, who cannot write request bodies to the
    # sandbox's temp folders; as any other user nginx runs as that user anyway.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};" if os.geteuid() == 0 else ""
    config = folder / "nginx.conf"
    config.write_text(NGINX_MAIN.format(user=user, folder=folder, rules=rules))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"  # /usr/sbin is not on every user's PATH
    process, log = sandbox.start([nginx, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")])
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", process, log, timeout=30)
    return url, folder / "access.log"
