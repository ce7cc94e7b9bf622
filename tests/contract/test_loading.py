"""Stack keys `aks-inference:models` and `aks-inference:auth`, loaded with their service folders."""

from __future__ import annotations

import json

import pytest

from contract.errors import ConfigError
from contract.loading import load_stack, validate_stack_config
from contract.service import load_service
from contract.stack import PROJECT_ROOT

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"


ADMIN_GROUP = "00000000-0000-0000-0000-000000000001"


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


BASE = {"purpose": "DevTest", "cluster": {"adminGroupObjectIds": [ADMIN_GROUP]}}


DIABETES = {"name": "diabetes", "path": "examples/models/diabetes"}


GPU_POOL = {"name": "gpu", "vmSize": "Standard_NC4as_T4_v3", "accelerator": "gpu"}


def validate(**values):
    return validate_stack_config({**BASE, **values}, "westeurope")


def issues(**values) -> dict[str, str]:
    with pytest.raises(ConfigError) as excinfo:
        validate(**values)
    return {issue.key: issue.problem for issue in excinfo.value.issues}


def test_no_models_and_no_auth_by_default():
    config = validate()
    assert config.models == [] and config.auth is None


def test_sample_model_validates_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = validate(models=[DIABETES])
    entry = config.models[0]
    assert entry.folder == SAMPLE and entry.model_dir == "model" and entry.deployment == {}


def test_models_arrive_as_json_text_from_pulumi():
    from contract.loading import parse_config_value

    config = validate(models=parse_config_value(json.dumps([{**DIABETES, "deployment": {"scoringTimeoutMs": 9000}}])))
    assert config.models[0].deployment == {"scoringTimeoutMs": 9000}


def test_service_errors_carry_full_keys():
    found = issues(
        models=[
            DIABETES,
            {"name": "diabetes-2", "path": "examples/models/diabetes", "deployment": {"autoScaler": {"minReplicas": 0}, "numReplicas": 2, "keys": {"primaryKey": "x"}}},
        ]
    )
    assert "greater than 0" in found["models[1].deployment.autoScaler.minReplicas"]
    assert "autoscale enabled and num_replicas provided." in found["models[1].deployment.numReplicas"]
    assert "16-256 characters" in found["models[1].deployment.keys.primaryKey"]


def test_errors_of_every_section_come_together():
    with pytest.raises(ConfigError) as excinfo:
        validate(
            models=[{**DIABETES, "deployment": {"scoringTimeoutMs": -1}}, {"name": "x", "path": "nowhere"}],
            network={"serviceCidr": "10.0.0.1/16"},
            auth={"tenantId": "not-a-guid", "audience": "api://x"},
        )
    keys = {issue.key for issue in excinfo.value.issues}
    assert {"models[0].deployment.scoringTimeoutMs", "models[1].path", "network.serviceCidr", "auth.tenantId"} <= keys


def test_model_names_are_unique():
    found = issues(models=[DIABETES, DIABETES])
    assert "must be unique" in found["models[1].name"]


def test_model_name_rule():
    found = issues(models=[{**DIABETES, "name": "Diabetes_Model"}])
    assert "3-32 characters" in found["models[0].name"]


def test_missing_path_resolves_against_the_project_root():
    found = issues(models=[{"name": "ghost", "path": "examples/models/ghost"}])
    assert str(PROJECT_ROOT / "examples/models/ghost") in found["models[0].path"]


def test_unknown_model_entry_key_suggests():
    found = issues(models=[{**DIABETES, "deploymnet": {}}])
    assert "did you mean 'deployment'?" in found["models[0].deploymnet"]


def test_model_entry_fields_are_required():
    found = issues(models=[{"name": "diabetes"}])
    assert found["models[0].path"] == "is required"


def test_token_auth_needs_the_auth_section():
    token = {**DIABETES, "deployment": {"authEnabled": False, "tokenAuthEnabled": True}}
    found = issues(models=[token])
    assert "needs aks-inference:auth" in found["models[0].deployment.tokenAuthEnabled"]
    config = validate(models=[token], auth={"tenantId": TENANT, "audience": "api://aks-inference"})
    assert load_service(config.models[0].folder, "diabetes", config.models[0].deployment).deployment.auth_mode == "token"


def test_auth_derives_issuer_and_jwks():
    auth = validate(auth={"tenantId": TENANT.upper(), "audience": "api://aks-inference"}).auth
    assert auth.tenant_id == TENANT
    assert auth.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    assert auth.jwks_uri == f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"


def test_auth_authority_for_sovereign_clouds_and_loopback():
    auth = validate(auth={"tenantId": TENANT, "audience": "aud", "authority": "https://login.microsoftonline.us"}).auth
    assert auth.issuer == f"https://login.microsoftonline.us/{TENANT}/v2.0"
    assert validate(auth={"tenantId": TENANT, "audience": "aud", "authority": "http://127.0.0.1:8080"}).auth.jwks_uri.startswith("http://127.0.0.1:8080/")


@pytest.mark.parametrize(
    "auth, key",
    [
        ({"tenantId": TENANT}, "auth.audience"),
        ({"audience": "aud"}, "auth.tenantId"),
        ({"tenantId": TENANT, "audience": "two words"}, "auth.audience"),
        ({"tenantId": TENANT, "audience": "aud", "authority": "http://login.example.com"}, "auth.authority"),
        ({"tenantId": TENANT, "audience": "aud", "authority": "https://login.microsoftonline.com/tenant"}, "auth.authority"),
        ({"tenantId": TENANT, "audience": "aud", "issuer": "x"}, "auth.issuer"),
    ],
)
def test_auth_errors(auth, key):
    assert key in issues(auth=auth)


def test_gpu_service_needs_a_gpu_pool():
    gpu_model = {**DIABETES, "deployment": {"gpuCores": 1}}
    assert "needs a GPU node pool" in issues(models=[gpu_model])["models[0].deployment.gpuCores"]
    assert validate(models=[gpu_model], pools=[GPU_POOL]).models[0].deployment == {"gpuCores": 1}


def test_secret_models_section_redacts_values_in_cross_checks():
    with pytest.raises(ConfigError) as excinfo:
        validate_stack_config({**BASE, "models": [{**DIABETES, "deployment": {"scoringTimeoutMs": 0, "description": "confidential-text"}}]}, "westeurope", secret_keys=["models"])
    text = str(excinfo.value)
    assert "models[0].deployment.scoringTimeoutMs" in text and "[secret]" in text


def test_stack_services_load_in_order():
    models = [DIABETES, {**DIABETES, "name": "diabetes-fixed", "deployment": {"autoScaler": None, "numReplicas": 2}}]
    services = load_stack({**BASE, "models": models}, "westeurope").services
    assert [s.name for s in services] == ["diabetes", "diabetes-fixed"]
    assert services[0].deployment.autoscale_on and not services[1].deployment.autoscale_on and services[1].deployment.initial_replicas == 2
