"""Every rule's description ends with a fix hint that names something real: a stack config key of the
contract (`aks-inference:<key>`, through the StackConfig aliases, into a model's v1 deployment keys)
or a file of the repository."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from contract.errors import unwrap_model
from contract.stack import PROJECT_ROOT as ROOT
from contract.stack import ModelEntry, StackConfig
from contract.v1_files import DeploymentConfig
from policies.rules import ALL

KEY = re.compile(r"`aks-inference:([A-Za-z][A-Za-z0-9.\[\]]*)`")
FILE = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:py|md|yaml|yml|json))`")
# `models[].deployment` is a dict of v1 deploymentconfig.json keys, validated as DeploymentConfig.
INNER_MODELS = {(ModelEntry, "deployment"): DeploymentConfig}


def key_exists(path: str) -> bool:
    """Whether `path` (`cluster.privateCluster`, `pools[].vmSize`, `models[].deployment.gpuCores`) is a key of the contract."""
    model: type[BaseModel] | None = StackConfig
    for part in path.split("."):
        if model is None:
            return False
        alias = part.removesuffix("[]")
        found = next(((name, f) for name, f in model.model_fields.items() if (f.alias or name) == alias), None)
        if found is None:
            return False
        name, field = found
        inner = INNER_MODELS.get((model, name)) or unwrap_model(field.annotation)
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return True


def fix_hint(description: str) -> str:
    assert "Fix: " in description, "the description has no fix hint"
    hint = description.rsplit("Fix: ", 1)[1]
    assert hint.endswith(".") and ". " not in hint.rstrip("."), f"the fix hint is not the last sentence: {hint!r}"
    return hint


@pytest.mark.parametrize("policy", ALL, ids=lambda p: p.name)
def test_every_fix_hint_names_a_real_key_or_file(policy):
    hint = fix_hint(policy.description)
    keys, files = KEY.findall(hint), FILE.findall(hint)
    assert keys or files, f"{policy.name}: the hint names no aks-inference key and no file: {hint!r}"
    assert [key for key in keys if not key_exists(key)] == []
    assert [path for path in files if not (ROOT / path).is_file()] == []


@pytest.mark.parametrize("key", [
    "cluster.privateCluster", "cluster.systemPool.vmSize", "pools[].accelerator", "egress.extraFqdns",
    "models[].deployment.gpuCores", "models[].deployment.autoScaler.minReplicas", "tls.certificate", "defender",
])
def test_real_keys_resolve(key):
    assert key_exists(key)


@pytest.mark.parametrize("key", [
    "gpuCount", "models[].deployment.gpuCount", "network.egress", "router.tls", "securityProfile.defender",
    "cluster.privateCluster.enabled", "cluster.private_cluster", "pools[].gpuCores",
])
def test_made_up_keys_do_not(key):
    assert not key_exists(key)


def test_a_hint_naming_a_made_up_key_or_file_is_caught():
    made_up = "GPU services must request GPUs. Fix: set `aks-inference:gpuCount` in `components/gpu.py`."
    hint = fix_hint(made_up)
    assert not key_exists(KEY.findall(hint)[0])
    assert not (ROOT / FILE.findall(hint)[0]).is_file()


def test_gpu_services_hint_names_the_v1_gpu_key():
    [gpu] = [p for p in ALL if p.name == "gpu-services-scheduled"]
    assert "models[].deployment.gpuCores" in KEY.findall(fix_hint(gpu.description))
