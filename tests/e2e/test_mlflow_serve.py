"""``mlflow models serve`` serves a registered version with no access to this repository.

The served processes run outside the checkout with a ``sitecustomize`` on ``PYTHONPATH``
that removes the repository (and its editable install) from the import system, so the
only ``vehicle_model`` they can import is the copy the model carries as code.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from e2e_support import MODEL, REPO, Sandbox, free_port, wait_for_http

from vehicle_model.model import VehicleClassifier

pytestmark = pytest.mark.e2e

TRAIN_IMAGES = 40
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
def registered(sandbox: Sandbox, tiny_dataset: Path) -> VehicleClassifier:
    """Version 1: logistic-regression heads on 40 tiny images, logged and registered as the flow does."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from tasks.data.dataset import load_dataset
    from tasks.registry.versions import log_classifier, register_version
    from vehicle_model.featurizer import Featurizer

    dataset = load_dataset(tiny_dataset)
    frame = dataset.frame.iloc[:TRAIN_IMAGES]
    featurizer = Featurizer()
    features = featurizer.transform_paths(frame["image"].tolist())
    heads = {a: LogisticRegression(max_iter=1000).fit(features, frame[a].tolist()) for a in dataset.attributes}
    classifier = VehicleClassifier(featurizer, heads)

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(sandbox.tracking_uri)
    try:
        experiment = mlflow.create_experiment("e2e-serve", artifact_location=(sandbox.root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = log_classifier(classifier, {"candidate": "logistic_regression"})
        version = register_version(info.model_uri, MODEL, {"candidate": "logistic_regression"})
    finally:
        mlflow.set_tracking_uri(previous)
    assert str(version.version) == "1"
    return classifier


@pytest.fixture(scope="module")
def repo_hidden(sandbox: Sandbox) -> dict[str, str]:
    """Environment additions under which Python cannot import this repository's packages."""
    folder = sandbox.root / "repository-hidden"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(HIDE_REPOSITORY)
    return {"PYTHONPATH": str(folder)}


@pytest.fixture(scope="module")
def served(sandbox: Sandbox, registered: VehicleClassifier, repo_hidden: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [
        sandbox.command("mlflow"),
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
    process, log = sandbox.start(command, env=repo_hidden)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/ping", process, log, timeout=180)
        yield url
    finally:
        sandbox.stop(process)


@pytest.fixture(scope="module")
def held_out_image(tiny_dataset: Path) -> bytes:
    frame = pd.read_csv(tiny_dataset / "labels.csv")
    return (tiny_dataset / frame["image"].iloc[-1]).read_bytes()


def test_model_version_carries_its_code_and_backbone(
    sandbox: Sandbox, registered: VehicleClassifier, repo_hidden: dict[str, str]
):
    hidden = sandbox.run([sys.executable, "-c", "import vehicle_model"], env=repo_hidden, timeout=60)
    assert hidden.returncode != 0 and "No module named 'vehicle_model'" in hidden.stderr, hidden.stderr

    loaded = sandbox.run([sys.executable, "-c", LOAD_AND_LOCATE], env=repo_hidden, timeout=180)
    assert loaded.returncode == 0, loaded.stderr[-4000:]
    report = json.loads(loaded.stdout.strip().splitlines()[-1])
    origin = Path(report["origin"])
    assert REPO not in origin.parents
    assert origin.parent.name == "vehicle_model" and origin.parent.parent.name == "code"
    assert {
        "MLmodel",
        "code/vehicle_model/pyfunc.py",
        "code/vehicle_model/featurizer.py",
        "artifacts/efficientnet_lite0.onnx",
        "artifacts/heads.joblib",
    } <= set(report["files"])


def _dataframe_split(image: str) -> dict:
    return {"dataframe_split": {"columns": ["image"], "data": [[image]]}}


def _dataframe_records(image: str) -> dict:
    return {"dataframe_records": [{"image": image}]}


@pytest.mark.parametrize(
    "payload", [_dataframe_split, _dataframe_records], ids=["dataframe_split", "dataframe_records"]
)
def test_invocations_classify_a_base64_image(
    served: str, payload: Callable[[str], dict], held_out_image: bytes, registered: VehicleClassifier
):
    body = payload(base64.b64encode(held_out_image).decode("ascii"))
    response = httpx.post(f"{served}/invocations", json=body, timeout=120, trust_env=False)

    assert response.status_code == 200, response.text
    [record] = response.json()["predictions"]
    assert set(record) == {"vehicle_type", "color"}
    [expected] = registered.predict_bytes([held_out_image])
    for attribute, prediction in record.items():
        assert set(prediction) == {"label", "probabilities"}
        probabilities = prediction["probabilities"]
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert prediction["label"] == max(probabilities, key=probabilities.get)
        assert prediction["label"] == expected[attribute]["label"]
        assert probabilities == pytest.approx(expected[attribute]["probabilities"], abs=1e-4)
