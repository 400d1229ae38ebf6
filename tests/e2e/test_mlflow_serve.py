"""``mlflow models serve`` serves a registered version with no access to this repository.

The served processes run outside the checkout with a ``sitecustomize`` on ``PYTHONPATH``
that removes the repository (and its editable install) from the import system, so the
only ``vehicle_model`` they can import is the copy the model carries as code. The version is
the one the session's ``vehicles train`` registered (a copy of its store, conftest.py).
"""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from e2e_support import MODEL, REPO, Sandbox, free_port, wait_for_http
from PIL import Image

from vehicle_model.featurizer import BACKBONES, resolve_precision
from vehicle_model.model import VehicleClassifier

pytestmark = pytest.mark.e2e

HIDE_REPOSITORY = f"""
import sys

_repo = {str(REPO)!r}


def _inside_repo(entry):
    return (entry == _repo or entry.startswith(_repo + "/")) and not entry.startswith(sys.prefix)


sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
sys.path[:] = [p for p in sys.path if "__editable__" not in p and not _inside_repo(p)]
"""
LOAD_AND_LOCATE = f"""
import json, os
from pathlib import Path

import mlflow.pyfunc

mlflow.pyfunc.load_model("models:/{MODEL}/1")
import vehicle_model

origin = Path(vehicle_model.__file__)
root = origin.parents[2]
files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
print(json.dumps({{"origin": str(origin), "files": files}}))
"""


@pytest.fixture(scope="module")
def registered(trained_sandbox: Sandbox) -> VehicleClassifier:
    """Version 1, loaded in this process from the repository's code: what the server must answer."""
    import mlflow.pyfunc

    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(trained_sandbox.tracking_uri)
    try:
        return mlflow.pyfunc.load_model(f"models:/{MODEL}/1").unwrap_python_model().classifier
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture(scope="module")
def repo_hidden(trained_sandbox: Sandbox) -> dict[str, str]:
    """Environment additions under which Python cannot import this repository's packages."""
    folder = trained_sandbox.root / "repository-hidden"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(HIDE_REPOSITORY)
    return {"PYTHONPATH": str(folder)}


@pytest.fixture(scope="module")
def served(trained_sandbox: Sandbox, repo_hidden: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [
        trained_sandbox.command("mlflow"),
        "models",
        "serve",
        "-m",
        f"models:/{MODEL}/1",
        "--env-manager",
        "local",
        "--host",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    process, log = trained_sandbox.start(command, env=repo_hidden)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", process, log, timeout=180)
        yield url
    finally:
        trained_sandbox.stop(process)


@pytest.fixture(scope="module")
def an_image(tiny_dataset: Path) -> bytes:
    frame = pd.read_csv(tiny_dataset / "labels.csv")
    return (tiny_dataset / frame["image"].iloc[-1]).read_bytes()


def test_model_version_carries_its_code_and_backbone(trained_sandbox: Sandbox, repo_hidden: dict[str, str]):
    hidden = trained_sandbox.run([sys.executable, "-c", "import vehicle_model"], env=repo_hidden, timeout=60)
    assert hidden.returncode != 0 and "No module named 'vehicle_model'" in hidden.stderr, hidden.stderr

    loaded = trained_sandbox.run([sys.executable, "-c", LOAD_AND_LOCATE], env=repo_hidden, timeout=180)
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    report = json.loads(loaded.stdout.strip().splitlines()[-1])
    origin = Path(report["origin"])
    assert REPO not in origin.parents
    assert origin.parent.name == "vehicle_model" and origin.parent.parent.name == "code"
    assert {
        "MLmodel",
        "code/vehicle_model/pyfunc.py",
        "code/vehicle_model/featurizer.py",
        "artifacts/heads.joblib",
    } <= set(report["files"])
    # The backbone of the precision it was trained with (BACKBONE_PRECISION=auto on this CPU).
    assert f"artifacts/{BACKBONES[resolve_precision('auto')].name}" in report["files"]


def _dataframe_split(image: str) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[image]]}}


def _dataframe_records(image: str) -> dict:
    return {"dataframe_records": [{"image": image}]}


@pytest.mark.parametrize(
    "payload", [_dataframe_split, _dataframe_records], ids=["dataframe_split", "dataframe_records"]
)
def test_invocations_classify_a_base64_image(
    served: str, payload: Callable[[str], dict], an_image: bytes, registered: VehicleClassifier
):
    body = payload(base64.b64encode(an_image).decode("ascii"))
    response = httpx.post(f"{served}/invocations", json=body, timeout=120, trust_env=False)

    assert response.status_code == 200, response.text
    [record] = response.json()["predictions"]
    assert set(record) == {"vehicle_type", "color"}
    [expected] = registered.predict_bytes([an_image])
    for attribute, prediction in record.items():
        assert set(prediction) - {"reason"} == {"label", "probabilities", "decision"}
        assert prediction["decision"] == expected[attribute]["decision"]
        assert ("reason" in prediction) == (prediction["decision"] != "confident")
        probabilities = prediction["probabilities"]
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert prediction["label"] == max(probabilities, key=probabilities.get)
        assert prediction["label"] == expected[attribute]["label"]
        assert probabilities == pytest.approx(expected[attribute]["probabilities"], abs=1e-4)


def test_invocations_say_colour_is_undetermined_on_a_greyscale_frame(served: str, an_image: bytes):
    grey = io.BytesIO()
    Image.open(io.BytesIO(an_image)).convert("L").save(grey, format="PNG")
    body = _dataframe_split(base64.b64encode(grey.getvalue()).decode("ascii"))
    response = httpx.post(f"{served}/invocations", json=body, timeout=120, trust_env=False)

    assert response.status_code == 200, response.text
    [record] = response.json()["predictions"]
    assert record["color"]["decision"] == "undetermined"
    assert record["color"]["reason"] == "color cannot be told on a greyscale frame"
    assert record["color"]["label"] == max(record["color"]["probabilities"], key=record["color"]["probabilities"].get)
    assert record["vehicle_type"]["decision"] != "undetermined"
