"""`aksinf import-v1`: v1 files in, a stack entry out that validates."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from aksinf import cli
from contract.loading import validate_stack_config
from contract.service import load_service
from contract.stack import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"


ADMIN_GROUP = "00000000-0000-0000-0000-000000000001"


BASE = {"purpose": "DevTest", "cluster": {"adminGroupObjectIds": [ADMIN_GROUP]}}


def validate(**values):
    return validate_stack_config({**BASE, **values}, "westeurope")


def test_import_v1_output_round_trips_through_validation(tmp_path, capsys):
    folder = tmp_path / "svc"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns("deploymentconfig.json", "__pycache__"))
    v1_deploy = {
        "computeType": "AKS",
        "autoScaler": {"autoscaleEnabled": True, "minReplicas": 2, "maxReplicas": 6, "targetUtilization": 50},
        "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1},
        "authEnabled": True,
        "keys": {"primaryKey": "primary-key-value-0123456789"},
        "scoringTimeoutMs": 30000,
        "maxConcurrentRequestsPerContainer": 2,
        "tags": {"team": "a"},
    }
    deploy_file = tmp_path / "v1-deploy.json"
    deploy_file.write_text(json.dumps(v1_deploy))
    code = cli.main(["import-v1", "--deploy-config", str(deploy_file), "--inference-config", str(folder / "inferenceconfig.json"), "--name", "imported"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "primary-key-value" not in out and "keys.primaryKey" in err  # secrets stay out of stdout
    stack_values = yaml.safe_load(out)
    entries = stack_values["aks-inference:models"]
    assert entries[0]["path"] == str(folder)
    config = validate(models=entries)
    entry = config.models[0]
    service = load_service(entry.folder, entry.name, entry.deployment)
    expected = {key: value for key, value in v1_deploy.items() if key != "keys"}
    assert service.deployment.to_v1(explicit_only=True) == {**expected, "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1.0}}
    assert (service.deployment.min_replicas, service.deployment.max_replicas, service.deployment.max_concurrent) == (2, 6, 2)


def test_import_v1_paths_inside_the_project_are_relative(capsys):
    code = cli.main(
        ["import-v1", "--deploy-config", str(SAMPLE / "deploymentconfig.json"), "--inference-config", str(SAMPLE / "inferenceconfig.json"), "--name", "diabetes"]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    entry = yaml.safe_load(out)["aks-inference:models"][0]
    assert entry["path"] == "examples/models/diabetes"
    assert "computeType" not in entry["deployment"]
    validate(models=[entry])


def test_import_v1_reports_every_problem(tmp_path, capsys):
    deploy_file = tmp_path / "deploy.json"
    deploy_file.write_text(json.dumps({"computeType": "aks", "autoScaler": {"maxReplicas": 3}, "sslEnabled": True}))
    inference_file = tmp_path / "inference.json"
    inference_file.write_text(json.dumps({"entryScript": "score.py", "extraDockerfileSteps": "steps"}))
    code = cli.main(["import-v1", "--deploy-config", str(deploy_file), "--inference-config", str(inference_file), "--name", "ok-name"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert "4 problem(s)" in err
    assert f"--deploy-config {deploy_file}: autoScaler.maxReplicas: is set without enabling autoscaling" in err
    assert f"--deploy-config {deploy_file}: sslEnabled: unknown key" in err
    assert f"--inference-config {inference_file}: entryScript: file not found" in err
    assert f"--inference-config {inference_file}: extraDockerfileSteps: file not found" in err


@pytest.mark.parametrize(
    "deploy_text, fragment",
    [
        (None, "file not found"),
        ("{oops", "is not valid JSON: Expecting property name"),
        ("[]", "must be a JSON object"),
    ],
)
def test_import_v1_bad_files(tmp_path, capsys, deploy_text, fragment):
    deploy_file = tmp_path / "deploy.json"
    if deploy_text is not None:
        deploy_file.write_text(deploy_text)
    code = cli.main(["import-v1", "--deploy-config", str(deploy_file), "--inference-config", str(SAMPLE / "inferenceconfig.json"), "--name", "diabetes"])
    assert code == 2
    assert fragment in capsys.readouterr().err


def test_import_v1_reads_yaml_like_v1(tmp_path, capsys):
    deploy_file = tmp_path / "deployment_config_aks.yml"
    deploy_file.write_text("computeType: AKS\nautoScaler:\n  autoscaleEnabled: true\n  maxReplicas: 3\n")
    code = cli.main(["import-v1", "--deploy-config", str(deploy_file), "--inference-config", str(SAMPLE / "inferenceconfig.json"), "--name", "diabetes"])
    out, _ = capsys.readouterr()
    assert code == 0
    assert yaml.safe_load(out)["aks-inference:models"][0]["deployment"] == {"autoScaler": {"autoscaleEnabled": True, "maxReplicas": 3}}


def test_import_v1_rejects_bad_name_and_path(tmp_path, capsys):
    code = cli.main(
        ["import-v1", "--deploy-config", str(SAMPLE / "deploymentconfig.json"), "--inference-config", str(SAMPLE / "inferenceconfig.json"), "--name", "No", "--path", str(tmp_path / "x")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "--name 'No'" in err and f"--path {tmp_path / 'x'}: is not a directory" in err


def test_import_v1_advice_for_a_yaml_inference_config_works(tmp_path, capsys):
    """A YAML inference config is to be copied as inferenceconfig.yml (not .json), and the folder then loads."""
    folder = tmp_path / "svc"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns("inferenceconfig.json", "deploymentconfig.json", "__pycache__"))
    given = folder / "inference_config_aks.yml"  # the name the v1 project used
    given.write_text(yaml.safe_dump(json.loads((SAMPLE / "inferenceconfig.json").read_text())))
    deploy_file = tmp_path / "deployment_config_aks.yaml"
    deploy_file.write_text("computeType: AKS\nnumReplicas: 2\n")
    code = cli.main(["import-v1", "--deploy-config", str(deploy_file), "--inference-config", str(given), "--name", "from-yaml"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"note: copy {given} to {folder / 'inferenceconfig.yml'}" in err
    assert "inferenceconfig.json" not in err
    shutil.copy(given, folder / "inferenceconfig.yml")  # follow the advice
    entry = yaml.safe_load(out)["aks-inference:models"][0]
    service = load_service(entry["path"], entry["name"], entry["deployment"])
    assert service.inference.entry_script == "score.py" and service.deployment.num_replicas == 2
    cli.main(["import-v1", "--deploy-config", str(deploy_file), "--inference-config", str(folder / "inferenceconfig.yml"), "--name", "from-yaml"])
    assert "note: copy" not in capsys.readouterr().err  # now in place


def test_import_v1_bad_yaml_names_the_file(tmp_path, capsys):
    deploy_file = tmp_path / "deploymentconfig.yml"
    deploy_file.write_text("computeType: [AKS\n")
    code = cli.main(["import-v1", "--deploy-config", str(deploy_file), "--inference-config", str(SAMPLE / "inferenceconfig.json"), "--name", "diabetes"])
    assert code == 2
    assert f"--deploy-config {deploy_file}: is not valid YAML" in capsys.readouterr().err


# --------------------------------------------------------------------------- --model NAME:VERSION=PATH


def _service_without_models(tmp_path):
    folder = tmp_path / "svc"
    shutil.copytree(SAMPLE, folder, ignore=shutil.ignore_patterns("model", "__pycache__"))
    return folder


def _import(folder, *models: str) -> list[str]:
    argv = ["import-v1", "--deploy-config", str(folder / "deploymentconfig.json"), "--inference-config", str(folder / "inferenceconfig.json"),
            "--name", "diabetes"]
    return argv + [f"--model={spec}" for spec in models]  # --model=: a spec may start with a dash


def test_import_v1_lays_registered_models_out_as_v1_did(tmp_path, capsys):
    """Two versions of one model and a folder model: model/<name>/<version>/<basename>, and the folder loads as v1 layout."""
    folder = _service_without_models(tmp_path)
    outputs = tmp_path / "outputs"
    (outputs / "onnx").mkdir(parents=True)
    pickle = next((SAMPLE / "model").glob("*.pkl"))
    (outputs / "onnx" / "model.onnx").write_bytes(b"onnx")
    code = cli.main(_import(folder, f"diabetes-ridge:1={pickle}", f"diabetes-ridge:2={pickle}", f"resnet.onnx:7={outputs / 'onnx'}"))
    err = capsys.readouterr().err
    assert code == 0, err
    assert (folder / "model" / "diabetes-ridge" / "2" / pickle.name).read_bytes() == pickle.read_bytes()
    assert (folder / "model" / "resnet.onnx" / "7" / "onnx" / "model.onnx").read_bytes() == b"onnx"
    service = load_service(folder, "diabetes")
    assert service.model_layout == "v1"
    assert [(m.name, m.version) for m in service.registered_models] == [("diabetes-ridge", 1), ("diabetes-ridge", 2), ("resnet.onnx", 7)]
    assert f"laid out {outputs / 'onnx'} as {folder / 'model' / 'resnet.onnx' / '7' / 'onnx'}" in err
    assert "note: put the models into" not in err


def test_import_v1_bad_model_specs_are_every_problem_and_nothing_is_copied(tmp_path, capsys):
    folder = _service_without_models(tmp_path)
    pickle = next((SAMPLE / "model").glob("*.pkl"))
    specs = ["no-version", f"ridge:07={pickle}", f"-ridge:1={pickle}", f"ridge:1={tmp_path / 'missing.pkl'}", f"ok:1={pickle}", f"ok:1={pickle}"]
    code = cli.main(_import(folder, *specs))
    err = capsys.readouterr().err
    assert code == 2
    assert "--model 'no-version': must be NAME:VERSION=PATH" in err
    assert "version '07' is not a registered model version" in err
    assert "name '-ridge' is not a registered model name" in err
    assert f"path {tmp_path / 'missing.pkl'} not found" in err
    assert "ok:1 is given twice" in err
    assert not (folder / "model").exists()


def test_import_v1_never_overwrites_or_mixes_with_a_flat_model(tmp_path, capsys):
    pickle = next((SAMPLE / "model").glob("*.pkl"))
    flat = tmp_path / "flat"
    shutil.copytree(SAMPLE, flat, ignore=shutil.ignore_patterns("__pycache__"))
    assert cli.main(_import(flat, f"ridge:1={pickle}")) == 2
    assert "holds a flat (unnamed) model" in capsys.readouterr().err
    folder = _service_without_models(tmp_path)
    assert cli.main(_import(folder, f"ridge:1={pickle}")) == 0
    capsys.readouterr()
    assert cli.main(_import(folder, f"ridge:1={pickle}")) == 2
    assert f"{folder / 'model' / 'ridge' / '1'} already exists; remove it first" in capsys.readouterr().err
