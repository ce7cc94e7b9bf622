"""The v1 examples (examples/v1) on the real azureml-inference-server-http, on 127.0.0.1 only.

Each entry script is exactly what a v1 user deployed: `from azureml.core.model import Model`,
`Model.get_model_path(...)`, `AZUREML_MODEL_DIR`, `X-Ms-Request-Id`, `azureml.monitoring`,
`azureml.contrib.services` (`@rawhttp`, a multipart upload from `request.files`), inference-schema's
Numpy, Pandas and standard types, a GPU deployment (served on the CPU locally). Every service folder is
copied, its models built by examples/v1/train.py (as `make` builds them), loaded by the contract and
started through `local.model_server` or behind the router in its own environment; the CPU examples also
go through the offline plan and the policy pack (the gpu one is the shipped gpu stack's model).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import httpx
import joblib
import numpy
import pytest

from aksinf.serve import try_lines
from contract.service import load_service
from contract.stack import PROJECT_ROOT
from contract.v1_files import CUDA_BASE_IMAGES
from local import model_server as local_server
from local.net import free_port
from local.platform import LocalPlatform
from review.plan import main as plan_main
from serving.images import environment_for
from tests.fixtures_services import model_server, stop_server
from tests.pulumi_harness import stack_config

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


def score(port: int, body=REQUEST, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"http://127.0.0.1:{port}/score", json=body, headers=headers or {}, timeout=30)


# ----------------------------------------------------------------------------- (a) several registered models


def test_multi_model_finds_each_model_by_name_and_version(examples, tmp_path):
    folder = examples / "multi-model"
    service = load_service(folder, "multi-model")
    assert service.registered_models == (("diabetes-lasso", 1), ("diabetes-ridge", 1), ("diabetes-ridge", 2))
    port = free_port()
    with model_server(local_server.command_for(service, port), tmp_path / "server.log", port):
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
    with model_server(local_server.command_for(service, port), log, port):
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
    with model_server(argv, tmp_path / "server.log", port) as process:
        response = score(port, headers={"x-request-id": "router-id-0100"})
        wrong_method = httpx.get(f"http://127.0.0.1:{port}/score")
        stop_server(process)  # shutdown seals and uploads every batch
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
    with model_server(local_server.command_for(service, port), tmp_path / "server.log", port):
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
    with model_server(local_server.command_for(service, port), tmp_path / "server.log", port, env={"PYTHONPATH": pythonpath}):
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


def test_every_example_scores_through_the_router_in_its_own_environment(examples, tmp_path, environments):
    """Each example as `aksinf serve` runs it: its own environment, built from its conda file (the
    session's cache), behind the router with key auth."""
    services = [
        load_service(examples / "multi-model", "multi-model"),
        load_service(examples / "mlopspython", "mlops-diabetes"),
        load_service(examples / "data-collection", "data-collection"),
    ]
    with LocalPlatform(services, tmp_path / "run", listen_port=free_port(), environments=environments) as platform:
        assert platform.failures == {}
        answers = {
            service.name: httpx.post(
                f"{platform.url}/api/v1/service/{service.name}/score", json=REQUEST,
                headers={"Authorization": f"Bearer {platform.keys[service.name][0]}"}, timeout=30,
            )
            for service in services
        }
        prefixes = {service.name: platform.environment_of[service.name].path for service in services}
    for name, answer in answers.items():
        assert answer.status_code == 200, f"{name}: {answer.text}"
    assert isinstance(answers["multi-model"].json(), dict) and "ridge" in answers["multi-model"].json()
    assert "result" in answers["mlops-diabetes"].json() and "predictions" in answers["data-collection"].json()
    assert all(path.parent == environments for path in prefixes.values())
    assert len(set(prefixes.values())) == 3  # three conda files, three environments


# ----------------------------------------------------------------------------- (d) @rawhttp upload, (e) GPU deployment

UPLOAD_MODEL = Path("rawhttp-upload/model/diabetes-csv/1/model.joblib")
GPU_MODEL = Path("gpu/model/diabetes-elasticnet/2/model.pkl")


@pytest.fixture(scope="module")
def upload_and_gpu(examples, tmp_path_factory, environments):
    """The rawhttp-upload and gpu examples as `aksinf serve` runs them: their own environments, behind the
    router with key auth. Local mode has no GPU: the gpu service (gpuCores 1, enableGpu) serves on the CPU."""
    services = [load_service(examples / "rawhttp-upload", "rawhttp-upload"), load_service(examples / "gpu", "diabetes-gpu")]
    assert services[1].deployment.gpu_count == 1 and services[1].inference.enable_gpu
    assert environment_for(services[1]).base_image == CUDA_BASE_IMAGES["11.8"]  # the image it gets on AKS
    with LocalPlatform(services, tmp_path_factory.mktemp("upload-gpu") / "run", listen_port=free_port(), environments=environments) as platform:
        assert platform.failures == {}
        yield platform, {service.name: service for service in services}


def _scoring(platform, name: str) -> tuple[str, dict[str, str]]:
    return f"{platform.url}/api/v1/service/{name}/score", {"Authorization": f"Bearer {platform.keys[name][0]}"}


def test_the_printed_try_line_uploads_the_sample_csv_to_the_rawhttp_service(examples, upload_and_gpu):
    """The `try` line `aksinf serve` prints, run as printed: curl's multipart upload of sample-request.csv."""
    platform, services = upload_and_gpu
    uri, _ = _scoring(platform, "rawhttp-upload")
    [(_, line)] = try_lines(services["rawhttp-upload"], uri, platform.keys["rawhttp-upload"])
    assert " -F csv=@" in line
    done = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=30, check=True)
    answer = json.loads(done.stdout)
    rows = numpy.array(REQUEST["data"])  # the same two rows as sample-request.csv
    assert answer == {"filename": "sample-request.csv", "rows": 2,
                      "predictions": pytest.approx(joblib.load(examples / UPLOAD_MODEL).predict(rows).tolist())}


def test_a_multipart_upload_through_the_router_reaches_request_files(examples, upload_and_gpu):
    platform, _ = upload_and_gpu
    uri, auth = _scoring(platform, "rawhttp-upload")
    # Columns in another order and one more column: the script picks the features by name.
    features = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    header = ["patient", *reversed(features)]
    lines = [",".join(header)] + [",".join([f"p{i}", *map(str, reversed(row))]) for i, row in enumerate(REQUEST["data"])]
    csv = ("\n".join(lines) + "\n").encode()
    response = httpx.post(uri, files={"csv": ("visit.csv", csv, "text/csv")}, headers=auth, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    model = joblib.load(examples / UPLOAD_MODEL)
    assert response.json() == {"filename": "visit.csv", "rows": 2, "predictions": pytest.approx(model.predict(numpy.array(REQUEST["data"])).tolist())}

    wrong_field = httpx.post(uri, files={"file": ("visit.csv", csv, "text/csv")}, headers=auth, timeout=30)
    assert wrong_field.status_code == 400 and "multipart field 'csv'" in wrong_field.json()["error"]
    usage = httpx.get(uri, headers=auth, timeout=30)
    assert usage.status_code == 200 and usage.text.startswith("POST a CSV file as the multipart field 'csv'")


def test_the_gpu_example_serves_on_the_cpu_with_pandas_and_standard_types(examples, upload_and_gpu):
    platform, _ = upload_and_gpu
    uri, auth = _scoring(platform, "diabetes-gpu")
    body = json.loads((examples / "gpu" / "sample-request.json").read_text())
    response = httpx.post(uri, json=body, headers=auth, timeout=30)
    assert response.status_code == 200, response.text
    model = joblib.load(examples / GPU_MODEL)
    expected = numpy.round(model.predict(numpy.array(REQUEST["data"])), 2).tolist()  # GlobalParameters.decimals: 2
    assert response.json() == {"Results": pytest.approx(expected), "device": "cpu"}
    swagger = httpx.get(f"{platform.url}/api/v1/service/diabetes-gpu/swagger.json", headers=auth, timeout=30).json()
    service_input = swagger["definitions"]["ServiceInput"]["properties"]
    assert set(service_input) == {"Inputs", "GlobalParameters"}
    assert "bmi" in json.dumps(service_input["Inputs"]) and "decimals" in json.dumps(service_input["GlobalParameters"])


def test_each_example_runs_with_its_own_pins_and_the_platform_keeps_its_own(upload_and_gpu):
    platform, _ = upload_and_gpu
    for name in ("rawhttp-upload", "diabetes-gpu"):
        python = platform.environment_of[name].python  # the interpreter the service's model server runs
        versions = subprocess.run([python, "-c", "import joblib, numpy, pandas; print(numpy.__version__, pandas.__version__, joblib.__version__)"],
                                  capture_output=True, text=True, timeout=60, check=True).stdout.split()
        assert versions == ["2.3.5", "2.2.3", "1.5.2"], name  # the conda file's pins
    assert numpy.__version__ != "2.3.5" and joblib.__version__ != "1.5.2"
    assert importlib.util.find_spec("pandas") is None  # the platform's .venv has no pandas


def test_the_v1_examples_plan_with_no_mandatory_violation(examples, tmp_path):
    """Every CPU example as a model of the dev stack, through the offline plan and the policy pack (the gpu
    example is the shipped gpu stack's model: tests/review/test_plan.py plans it)."""
    config = stack_config("dev")
    config["aks-inference:models"] += [
        {"name": name, "path": str(examples / folder)}
        for name, folder in (("multi-model", "multi-model"), ("mlops-diabetes", "mlopspython"),
                             ("data-collection", "data-collection"), ("rawhttp-upload", "rawhttp-upload"))
    ]
    out = io.StringIO()
    code = plan_main("dev", tmp_path / "plans", config=config, out=out)
    assert code == 0, out.getvalue()
    assert "Policies mandatory: 0 violation(s)" in out.getvalue()
    assert "aks-inference-models-rawhttp-upload-deployment" in out.getvalue()  # the example is in the plan
