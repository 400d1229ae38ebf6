"""The layout's rules: no import cycle, imports point down the stages, pure steps stay pure.

Read from the source with ``ast`` (every import counts, ``TYPE_CHECKING`` and function-level
ones included, since a cycle held together by either breaks as soon as it becomes real), then
checked by importing in fresh interpreters.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vehicle_model", "feedback", "tasks", "flows", "serving", "cli")

# Lowest first: a module may import its own layer or a lower one, never a higher one.
LAYERS = (
    "vehicle_model",
    "feedback",
    "tasks.defaults",
    "tasks.data",
    "tasks.tracking",
    "tasks.training",
    "tasks.registry",
    "tasks.monitoring",
    "flows",
    "cli",
)
# Modules that wrap a step with Prefect, talk to MLflow or Redis, or keep the learning loop's
# items (SQL) and images (fsspec); every other module of tasks/, feedback/ and vehicle_model/
# is pure and may import none of them.
ADAPTERS = {
    "feedback.images",
    "feedback.store",
    "tasks.tracking",
    "tasks.registry.lock",
    "tasks.registry.versions",
    "tasks.monitoring.log_reader",
    "tasks.monitoring.reference",
    "vehicle_model.pyfunc",
}
SERVICES = ("prefect", "mlflow", "redis", "litestar", "sqlalchemy", "fsspec")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


MODULES = _modules()


def _first_party_imports(name: str, path: Path) -> set[str]:
    """First-party modules ``name`` imports anywhere in its body (resolved to known modules)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for target in targets:
            # ``from tasks.data import split`` names a module; ``from tasks.data.split import x`` a member.
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(f"{target}."):
                found.add(target)
    return found


GRAPH = {name: _first_party_imports(name, path) for name, path in MODULES.items()}


def _layer(name: str) -> int | None:
    matches = [i for i, layer in enumerate(LAYERS) if name == layer or name.startswith(f"{layer}.")]
    return max(matches) if matches else None


def _is_pure(name: str) -> bool:
    steps = name.rpartition(".")[2].endswith("_steps")
    return name.startswith(("tasks.", "feedback", "vehicle_model")) and name not in ADAPTERS and not steps


def test_no_import_cycle() -> None:
    done: set[str] = set()
    active: list[str] = []

    def visit(name: str) -> None:
        if name in active:
            cycle = [*active[active.index(name) :], name]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        if name in done:
            return
        active.append(name)
        for target in sorted(GRAPH[name]):
            visit(target)
        active.pop()
        done.add(name)

    for name in sorted(GRAPH):
        visit(name)


def test_imports_point_down_the_stages() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if (own := _layer(name)) is not None
        for target in targets
        if (their := _layer(target)) is not None and their > own
    ]
    assert upward == []


def test_serving_imports_only_the_model_and_feedback_packages() -> None:
    reaching = [
        f"{name} -> {target}"
        for name, targets in GRAPH.items()
        if name.startswith("serving")
        for target in targets
        if not target.startswith(("serving", "vehicle_model", "feedback"))
    ]
    assert reaching == []


def test_every_module_imports_alone() -> None:
    """Each module is imported first in a process whose first-party modules are then forgotten."""
    script = """
import importlib, json, sys, traceback
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m.split(".")[0] in PACKAGES]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failures[name] = traceback.format_exc(limit=-3)
print(json.dumps(failures))
""".replace("PACKAGES", repr(PACKAGES))
    result = _run(script, sorted(MODULES))
    assert result == {}


def test_pure_modules_load_no_service_client() -> None:
    """The pure steps import no Prefect, MLflow, Redis, Litestar, SQLAlchemy or fsspec, not even indirectly."""
    script = """
import importlib, json, sys
loaded = {}
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
    services = sorted({m.split(".")[0] for m in sys.modules} & set(SERVICES))
    if services:
        loaded[name] = services
        break
print(json.dumps(loaded))
""".replace("SERVICES", repr(SERVICES))
    pure = sorted(name for name in MODULES if _is_pure(name))
    assert {"tasks.monitoring.report", "tasks.registry.gate", "feedback.sampling"} <= set(pure)
    assert _run(script, pure) == {}


def _run(script: str, names: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(names)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
