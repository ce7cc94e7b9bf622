"""The v1 examples (examples/v1) on the real azureml-inference-server-http, on 127.0.0.1 only.

Each entry script is exactly what a v1 user deployed: `from azureml.core.model import Model`,
`Model.get_model_path(...)`, `AZUREML_MODEL_DIR`, `X-Ms-Request-Id`, `azureml.monitoring`,
`azureml.contrib.services`. Every service folder is copied, its models built by examples/v1/train.py
(as `make` builds them), loaded by the contract and started through `local.model_server`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import joblib
import numpy
import pytest

from contract.service import load_service
from contract.stack import PROJECT_ROOT
from local import model_server as local_server
from local.net import free_port
from local.platform import LocalPlatform

V1_EXAMPLES = PROJECT_ROOT / "examples" / "v1"
REQUEST = json.loads((V1_EXAMPLES / "multi-model" / "sample-request.json").read_text())


def _train_module():
    spec = importlib.util.spec_from_file_location("v1_examples_train", V1_EXAMPLES / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    """A copy of examples/v1 (without built models) with its models built into it."""
    root = tmp_path_factory.mktemp("v1") / "examples"
    shutil.copytree(V1_EXAMPLES, root, ignore=shutil.ignore_patterns("model", "__pycache__"))
    _train_module().main(["--root", str(root)])
    return root


@contextlib.contextmanager
def serving(argv: list[str], log_path: Path, port: int, env: dict[str, str] | None = None):
    """A model server process group, healthy on `port`; stopped (SIGTERM, then SIGKILL) on exit."""
    log = open(log_path, "w+")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"server exited with {process.returncode}:\n{log.read()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("server not healthy within 60 s")
            time.sleep(0.1)
        yield process
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def score(port: int, body=REQUEST, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/score", json=body, headers=headers or {}, timeout=30)


# ----------------------------------------------------------------------------- (a) several registered models


def test_multi_model_finds_each_model_by_name_and_version(examples, tmp_path):
    folder = examples / "multi-model"
    service = load_service(folder, "multi-model")
    assert service.registered_models == (("diabetes-lasso", 1), ("diabetes-ridge", 1), ("diabetes-ridge", 2))
    port = free_port()
    with serving(local_server.command_for(service, port), tmp_path / "server.log", port):
        response = score(port)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert isinstance(answer, dict), answer  # the v1 script returns str(error) on failure
    rows = numpy.array(REQUEST["data"])
    models = folder / "model"
    assert answer["ridge"] == joblib.load(models / "diabetes-ridge" / "2" / "ridge.pkl").predict(rows).tolist()
    assert answer["ridge_previous"] == joblib.load(models / "diabetes-ridge" / "1" / "ridge.pkl").predict(rows).tolist()
    assert answer["lasso"] == joblib.load(models / "diabetes-lasso" / "1" / "lasso" / "model.pkl").predict(rows).tolist()
    assert answer["ridge"] != answer["ridge_previous"]
    assert answer["lasso_features"][:3] == ["age", "sex", "bmi"]


# ----------------------------------------------------------------------------- (b) MLOpsPython


@pytest.fixture(scope="module")
def mlops_server(examples, tmp_path_factory):
    service = load_service(examples / "mlopspython", "mlops-diabetes")  # inferenceconfig.yml + deploymentconfig.yml
    assert service.registered_models == (("diabetes_regression_model.pkl", 3),)
    port = free_port()
    log = tmp_path_factory.mktemp("mlops") / "server.log"
    with serving(local_server.command_for(service, port), log, port):
        yield port, log


def test_mlopspython_finds_its_model_through_azureml_model_dir(examples, mlops_server):
    port, _ = mlops_server
    response = score(port, headers={"x-request-id": "router-id-0001"})
    assert response.status_code == 200, response.text
    model = joblib.load(examples / "mlopspython" / "model" / "diabetes_regression_model.pkl" / "3" / "diabetes_regression_model.pkl")
    assert response.json()["result"] == pytest.approx(model.predict(numpy.array(REQUEST["data"])).tolist())


def test_x_ms_request_id_is_the_routers_request_id(mlops_server):
    port, log = mlops_server
    response = score(port, headers={"x-request-id": "router-id-0002"})
    assert response.json()["request_id"] == "router-id-0002"
    assert response.headers["x-request-id"] == "router-id-0002"
    # the print() of run() is a JSON log line carrying the same id, and the server logged no deprecation warning
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    printed = [line for line in lines if "router-id-0002" in line["message"] and line["logger"] == "azmlinfsrv.print"]
    assert printed and printed[0]["request_id"] == "router-id-0002"
    assert not any("x-ms-request-id header has been deprecated" in line["message"] for line in lines)


def test_a_client_sent_x_ms_request_id_wins(mlops_server):
    port, _ = mlops_server
    response = score(port, headers={"x-request-id": "router-id-0003", "X-Ms-Request-Id": "client-id-7"})
    assert response.json()["request_id"] == "client-id-7"


def test_without_a_router_the_servers_own_request_id_is_used(mlops_server):
    port, _ = mlops_server
    response = score(port)
    assert response.json()["request_id"] == response.headers["x-request-id"] != ""


def test_mlopspython_swagger_comes_from_inference_schema(mlops_server):
    port, _ = mlops_server
    swagger = httpx.get(f"http://127.0.0.1:{port}/swagger.json").json()
    assert "data" in json.dumps(swagger["definitions"]["ServiceInput"])


# ----------------------------------------------------------------------------- (c) azureml.monitoring


def test_data_collection_with_azureml_monitoring_and_rawhttp(examples, tmp_path):
    service = load_service(examples / "data-collection", "data-collection")
    assert service.deployment.collects_model_data
    modeldata = tmp_path / "modeldata"
    port = free_port()
    argv = local_server.command_for(service, port, modeldata=modeldata.as_uri(), modeldata_spool=tmp_path / "spool")
    with serving(argv, tmp_path / "server.log", port) as process:
        response = score(port, headers={"x-request-id": "router-id-0100"})
        wrong_method = httpx.get(f"http://127.0.0.1:{port}/score")
        stop(process)  # shutdown seals and uploads every batch
    assert response.status_code == 200, response.text
    assert response.json()["x_ms_request_id"] == "router-id-0100"
    assert wrong_method.status_code == 405  # the script's own AMLResponse (azureml.contrib.services)
    # model_version was left out: the deployed version (4) is filled in, as v1 on AKS did
    inputs = list((modeldata / "data-collection" / "diabetes-ridge" / "4" / "inputs").rglob("*.jsonl"))
    predictions = list((modeldata / "data-collection" / "diabetes-ridge" / "4" / "predictions").rglob("*.jsonl"))
    assert len(inputs) == 1 and len(predictions) == 1, list(modeldata.rglob("*"))
    records = [json.loads(line) for line in inputs[0].read_text().splitlines()]
    assert [r["features"]["age"] for r in records] == [row[0] for row in REQUEST["data"]]
    assert {r["request_id"] for r in records} == {"router-id-0100"}
    predicted = [json.loads(line) for line in predictions[0].read_text().splitlines()]
    assert [p["features"]["progression"] for p in predicted] == response.json()["predictions"]
    assert {p["correlation_id"] for p in predicted} == {r["correlation_id"] for r in records}


# ----------------------------------------------------------------------------- the layout and the import rule, probed


PROBE = '''
import json, os, sys
from azureml.core.model import Model


def init():
    pass


def run(raw_data):
    import azureml.core.model
    return {
        "model_dir": os.environ["AZUREML_MODEL_DIR"],
        "registered": os.environ.get("AKSINF_REGISTERED_MODELS"),
        "cwd": os.getcwd(),
        "models": sorted(os.listdir("azureml-models")),
        "latest": Model.get_model_path("churn"),
        "first": Model.get_model_path("churn", version=1),
        "model_module": azureml.core.model.__file__,
        "path_tail": sys.path[-1],
    }
'''


def probe_service(root: Path) -> Path:
    folder = root / "probe"
    for rel in ("churn/1/churn.pkl", "churn/2/churn.pkl", "fraud/1/fraud.pkl"):
        (folder / "model" / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / "model" / rel).write_bytes(b"\0")
    (folder / "score.py").write_text(PROBE)
    (folder / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    return folder


def test_the_server_runs_in_a_v1_layout_and_cleans_it_up(tmp_path):
    service = load_service(probe_service(tmp_path), "probe")
    port = free_port()
    with serving(local_server.command_for(service, port), tmp_path / "server.log", port):
        seen = score(port, body={}).json()
    run_dir = Path(seen["cwd"])
    assert seen["model_dir"] == str(run_dir / "azureml-models")  # several models: the root, as v1
    assert seen["registered"] == "churn:1,churn:2,fraud:1"
    assert seen["models"] == ["churn", "fraud"]
    assert seen["latest"] == "azureml-models/churn/2/churn.pkl" and seen["first"] == "azureml-models/churn/1/churn.pkl"
    assert "/aksinf_runtime/compat/azureml/core/model.py" in seen["model_module"]
    assert seen["path_tail"].endswith("/aksinf_runtime/compat")  # after the app root and site-packages
    assert not run_dir.exists()  # the private run directory went with the server


def test_a_real_azureml_core_on_the_path_wins(tmp_path):
    """Installing the real azureml-core is too heavy for the suite; a real-looking one stands in."""
    site = tmp_path / "site"
    (site / "azureml" / "core").mkdir(parents=True)
    (site / "azureml" / "__init__.py").write_text("__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n")
    (site / "azureml" / "core" / "__init__.py").write_text("")
    (site / "azureml" / "core" / "model.py").write_text(
        "class Model:\n    @staticmethod\n    def get_model_path(model_name, version=None, _workspace=None):\n"
        "        return 'real-azureml-core:' + model_name\n"
    )
    service = load_service(probe_service(tmp_path), "probe")
    port = free_port()
    pythonpath = os.pathsep.join([str(site), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    with serving(local_server.command_for(service, port), tmp_path / "server.log", port, env={"PYTHONPATH": pythonpath}):
        seen = score(port, body={}).json()
    assert seen["latest"] == "real-azureml-core:churn"
    assert seen["model_module"] == str(site / "azureml" / "core" / "model.py")


# ----------------------------------------------------------------------------- through the router


def test_through_the_router_the_script_sees_the_routers_request_id(examples, tmp_path):
    service = load_service(examples / "mlopspython", "mlops-diabetes")
    with LocalPlatform([service], tmp_path / "run", listen_port=free_port()) as platform:
        key = platform.keys["mlops-diabetes"][0]
        response = httpx.post(
            f"{platform.url}/api/v1/service/mlops-diabetes/score", json=REQUEST, headers={"Authorization": f"Bearer {key}"}, timeout=30,
        )
    assert response.status_code == 200, response.text
    router_id = response.headers["x-request-id"]
    assert router_id and response.json()["request_id"] == router_id
    access = [json.loads(line) for line in (tmp_path / "run" / "access.log").read_text().splitlines() if line.strip()]
    assert router_id in {entry.get("request_id") for entry in access}
