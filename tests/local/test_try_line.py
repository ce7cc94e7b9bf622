"""The `try` line `aksinf serve` prints fits the service: body and auth."""

from __future__ import annotations

import json
import shlex
import shutil

from aksinf.serve import try_lines
from contract.service import load_service
from contract.stack import PROJECT_ROOT
from router.spec import JwtSettings

URI = "http://127.0.0.1:8800/api/v1/service/svc/score"
RAWHTTP = '''from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request: AMLRequest):
    image = request.files["image"]
    return AMLResponse(str(len(image.read())), 200)
'''
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def _service(folder, script="def init():\n    pass\n\n\ndef run(raw):\n    return raw\n", deployment=None, files=()):
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "m.bin").write_bytes(b"\0")
    (folder / "score.py").write_text(script)
    (folder / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    (folder / "deploymentconfig.json").write_text(json.dumps({"computeType": "AKS", **(deployment or {})}))
    for name in files:
        (folder / name).write_bytes(b"sample")
    return load_service(folder, "svc")


def test_a_json_sample_is_posted_with_the_primary_key(tmp_path):
    service = _service(tmp_path, files=["sample-request.json"])
    [(label, line)] = try_lines(service, URI, ["primary", "secondary"])
    assert label == "try"
    assert shlex.split(line) == ["curl", "-s", "-H", "Authorization: Bearer primary", "-H", "Content-Type: application/json",
                                 "--data", f"@{tmp_path / 'sample-request.json'}", URI]


def test_a_rawhttp_service_with_a_sample_file_gets_a_multipart_upload_in_the_scripts_field(tmp_path):
    service = _service(tmp_path, RAWHTTP, {"authEnabled": False}, files=["sample-request.jpg"])
    [(_, line)] = try_lines(service, URI, [])
    assert shlex.split(line) == ["curl", "-s", "-F", f"image=@{tmp_path / 'sample-request.jpg'}", URI]


def test_a_rawhttp_service_without_a_sample_file_gets_json(tmp_path):
    service = _service(tmp_path, RAWHTTP, {"authEnabled": False})
    [(_, line)] = try_lines(service, URI, [])
    assert shlex.split(line)[-3:] == ["--data", '{"data": []}', URI]


def test_a_token_service_gets_a_token_variable_and_how_to_get_one(tmp_path):
    service = _service(tmp_path, deployment={"tokenAuthEnabled": True})
    jwt = JwtSettings(f"https://login.microsoftonline.com/{TENANT}/v2.0", ("api://aks-inference",))
    (_, line), (label, hint) = try_lines(service, URI, [], jwt)
    assert "-H \"Authorization: Bearer $TOKEN\"" in line
    assert label == "token"
    assert f"az account get-access-token --tenant {TENANT} --scope api://aks-inference/.default" in hint
    (_, _), (_, without_auth) = try_lines(service, URI, [], None)
    assert "aks-inference:auth" in without_auth


def test_local_ca_bundle_falls_back_to_certifi_where_the_system_has_none(tmp_path):
    import certifi

    from aksinf.serve import local_ca_bundle

    present = tmp_path / "ca-certificates.crt"
    present.write_text("-----BEGIN CERTIFICATE-----\n")
    assert local_ca_bundle(present) == str(present)
    assert local_ca_bundle(tmp_path / "missing.crt") == certifi.where()


def test_the_rawhttp_upload_example_gets_its_csv_sample_in_the_field_its_script_reads(tmp_path):
    """examples/v1/rawhttp-upload as shipped (its model is built by `make`; a stand-in file here)."""
    folder = tmp_path / "rawhttp-upload"
    shutil.copytree(PROJECT_ROOT / "examples" / "v1" / "rawhttp-upload", folder, ignore=shutil.ignore_patterns("model", "__pycache__"))
    (folder / "model" / "diabetes-csv" / "1").mkdir(parents=True)
    (folder / "model" / "diabetes-csv" / "1" / "model.joblib").write_bytes(b"\0")
    service = load_service(folder, "rawhttp-upload")
    [(_, line)] = try_lines(service, URI, ["primary"])
    assert shlex.split(line) == ["curl", "-s", "-H", "Authorization: Bearer primary", "-F", f"csv=@{folder / 'sample-request.csv'}", URI]
