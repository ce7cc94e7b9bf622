"""Hostile and out-of-range input: every case is a keyed config error, never a traceback and never a value
Kubernetes, Envoy or Azure would refuse later (issue: bad input gets a clear error and changes nothing)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from contract import limits
from contract.errors import ConfigError
from contract.loading import parse_config_value, read_stack_file, validate_stack_config
from contract.service import ServiceConfigError, load_service
from contract.v1_files import check_auth_key, parse_deployment
from local.platform import stored_keys
from router.discovery import ROUTER_NAMESPACE

ADMINS = {"adminGroupObjectIds": ["00000000-0000-0000-0000-000000000001"]}
BASE = {"purpose": "DevTest", "cluster": ADMINS}
ENTRY = "def init():\n    pass\n\n\ndef run(raw):\n    return raw\n"
INT32_OVERFLOW = 2**31


def stack_issues(values: dict, location: object = "westeurope") -> dict[str, str]:
    with pytest.raises(ConfigError) as excinfo:
        validate_stack_config(values, location)
    return {issue.key: issue.problem for issue in excinfo.value.issues}


def deployment_issues(**fields) -> dict[str, str]:
    config, issues = parse_deployment({"computeType": "AKS", **fields}, key="")
    assert config is None
    return {issue.key: issue.problem for issue in issues}


# ----------------------------------------------------------------------------- stack keys


@pytest.mark.parametrize("location", ["WestEurope", "", "west europe", 7])
def test_a_bad_region_is_a_config_error(location):
    assert "azure-native:location" in stack_issues(BASE, location)


@pytest.mark.parametrize(
    ("values", "key", "fragment"),
    [
        ({"cluster": {**ADMINS, "authorizedIpRanges": ["0.0.0.0/0"]}}, "cluster.authorizedIpRanges", "every IPv4 address"),
        ({"cluster": {**ADMINS, "authorizedIpRanges": ["0.0.0.0/1", "128.0.0.0/1"]}}, "cluster.authorizedIpRanges", "every IPv4 address"),
        ({"network": {"nodeSubnetCidr": "10.224.0.0/30"}}, "network.nodeSubnetCidr", "/29 or larger"),
        ({"pools": [{"name": "gpu", "vmSize": "Standard_NC4as_T4_v3", "accelerator": "gpu", "taints": ["ké=v:NoSchedule"]}]}, "pools[0].taints[0]", "not a valid Kubernetes key"),
        ({"pools": [{"name": "gpu", "vmSize": "Standard_NC4as_T4_v3", "accelerator": "gpu", "taints": ['"q"=v:NoSchedule']}]}, "pools[0].taints[0]", "not a valid Kubernetes key"),
        ({"pools": [{"name": "gpu", "vmSize": "Standard_NC4as_T4_v3", "accelerator": "gpu", "taints": ["k=v:Sometimes"]}]}, "pools[0].taints[0]", "effects"),
        ({"pools": [{"name": "cpu", "vmSize": "Standard_D4ds_v5", "labels": {"kubernetes.io/role": "x"}}]}, "pools[0].labels", "kubelet may not set"),
        ({"pools": [{"name": "cpu", "vmSize": "Standard_D4ds_v5", "labels": {"node-role.kubernetes.io/infra": ""}}]}, "pools[0].labels", "kubelet may not set"),
        ({"pools": [{"name": "cpu", "vmSize": "Standard_D4ds_v5", "labels": {"kubernetes.azure.com/mode": "x"}}]}, "pools[0].labels", "AKS reserves"),
        ({"pools": [{"name": "cpu", "vmSize": "Standard_D4ds_v5", "labels": {"team\n": "x"}}]}, "pools[0].labels", "not a valid Kubernetes key"),
    ],
)
def test_values_azure_or_kubernetes_would_refuse_are_config_errors(values, key, fragment):
    found = stack_issues({**BASE, **values})
    assert key in found and fragment in found[key], found


def test_allowed_node_labels_and_taints_still_pass():
    pool = {"name": "cpu", "vmSize": "Standard_D4ds_v5", "labels": {"node.kubernetes.io/exclude-from-external-load-balancers": "true", "team": "a"}, "taints": ["team=a:NoSchedule", "spot=:PreferNoSchedule"]}
    assert validate_stack_config({**BASE, "pools": [pool]}, "westeurope").pools[0].taints == ["team=a:NoSchedule", "spot=:PreferNoSchedule"]


@pytest.mark.parametrize("depth", [limits.MAX_NESTING + 1, 5000])
def test_deeply_nested_config_is_a_config_error(depth):
    deep = parse_config_value("[" * depth + "]" * depth)
    assert "is nested deeper" in stack_issues({**BASE, "pools": deep})["pools"]


# ----------------------------------------------------------------------------- v1 deployment numbers


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"scoringTimeoutMs": 10**15}, "scoringTimeoutMs"),
        ({"maxConcurrentRequestsPerContainer": INT32_OVERFLOW}, "maxConcurrentRequestsPerContainer"),
        ({"maxQueueWaitMs": INT32_OVERFLOW}, "maxQueueWaitMs"),
        ({"numReplicas": INT32_OVERFLOW}, "numReplicas"),
        ({"autoScaler": {"autoscaleEnabled": True, "maxReplicas": INT32_OVERFLOW}}, "autoScaler.maxReplicas"),
        ({"livenessProbeRequirements": {"periodSeconds": INT32_OVERFLOW}}, "livenessProbeRequirements.periodSeconds"),
        ({"livenessProbeRequirements": {"initialDelaySeconds": INT32_OVERFLOW}}, "livenessProbeRequirements.initialDelaySeconds"),
        ({"gpuCores": INT32_OVERFLOW}, "gpuCores"),
        ({"containerResourceRequirements": {"cpu": math.inf}}, "containerResourceRequirements.cpu"),
        ({"containerResourceRequirements": {"cpu": math.nan}}, "containerResourceRequirements.cpu"),
        ({"containerResourceRequirements": {"cpu": 1e308}}, "containerResourceRequirements.cpu"),
        ({"containerResourceRequirements": {"memoryInGB": 1e308}}, "containerResourceRequirements.memoryInGB"),
        ({"containerResourceRequirements": {"memoryInGB": 0.0000001}}, "containerResourceRequirements.memoryInGB"),
        ({"containerResourceRequirements": {"cpu": 0.00001}}, "containerResourceRequirements.cpu"),
        ({"containerResourceRequirements": {"cpu": 1, "cpuLimit": math.inf}}, "containerResourceRequirements.cpuLimit"),
    ],
)
def test_numbers_beyond_what_kubernetes_and_envoy_accept_are_config_errors(fields, key):
    assert key in deployment_issues(**fields)


def test_the_largest_accepted_numbers_still_pass():
    config, issues = parse_deployment(
        {"computeType": "AKS", "scoringTimeoutMs": limits.INT32_MAX, "maxConcurrentRequestsPerContainer": limits.INT32_MAX,
         "containerResourceRequirements": {"cpu": limits.MAX_CPU_CORES, "memoryInGB": limits.MAX_MEMORY_GB}},
        key="",
    )
    assert issues == [] and config.scoring_timeout_ms == limits.INT32_MAX


@pytest.mark.parametrize("namespace", ["kube-system", "default", "kube-public", "kube-node-lease", "kube-anything", ROUTER_NAMESPACE])
def test_reserved_namespaces_are_refused(namespace):
    assert "namespace" in deployment_issues(namespace=namespace)


def test_the_router_namespace_in_the_contract_is_the_routers():
    assert limits.ROUTER_NAMESPACE == ROUTER_NAMESPACE


@pytest.mark.parametrize("key", ["a" * 32, "ab" * 16, "abcdabcdabcdabcd", "0000000000000000000000"])
def test_guessable_keys_are_refused(key):
    with pytest.raises(ValueError, match="too easy to guess"):
        check_auth_key(key)
    assert "keys.primaryKey" in deployment_issues(keys={"primaryKey": key})


def test_random_keys_pass():
    assert check_auth_key("uthTGjV-KF9jv7o7yeoNucIYpAtPL3qa")


# ----------------------------------------------------------------------------- service folders


@pytest.fixture
def service(tmp_path: Path) -> Path:
    folder = tmp_path / "svc"
    folder.mkdir()
    (folder / "score.py").write_text(ENTRY)
    (folder / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    (folder / "model").mkdir()
    (folder / "model" / "weights.bin").write_bytes(b"\0")
    return folder


def folder_issues(folder: Path, **kwargs) -> dict[str, str]:
    with pytest.raises(ServiceConfigError) as excinfo:
        load_service(folder, "svc", **kwargs)
    return {issue.key: issue.problem for issue in excinfo.value.issues}


@pytest.mark.parametrize(
    ("inference", "key"),
    [
        ({"entryScript": "../outside.py"}, "inferenceConfig.entryScript"),
        ({"entryScript": "/etc/passwd.py"}, "inferenceConfig.entryScript"),
        ({"entryScript": "score.py", "sourceDirectory": ".."}, "inferenceConfig.sourceDirectory"),
        ({"entryScript": "score.py", "condaFile": "../../conda.yml"}, "inferenceConfig.condaFile"),
        ({"entryScript": "score.py", "extraDockerfileSteps": "../steps"}, "inferenceConfig.extraDockerfileSteps"),
    ],
)
def test_paths_leaving_the_service_folder_are_refused(service, inference, key):
    (service.parent / "outside.py").write_text(ENTRY)
    (service / "inferenceconfig.json").write_text(json.dumps(inference))
    found = folder_issues(service)
    assert key in found and "inside" in found[key]


def test_a_model_dir_outside_the_folder_is_refused(service):
    (service.parent / "elsewhere").mkdir()
    assert "modelDir" in folder_issues(service, model_dir="../elsewhere")


@pytest.mark.parametrize("target", ["/etc/hostname", "../../secret.txt"])
def test_links_out_of_the_service_folder_are_refused(service, target):
    (service.parent / "secret.txt").write_text("host file")
    os.symlink(target, service / "model" / "linked")
    found = folder_issues(service)
    assert "outside the service folder" in found["path"]


def test_links_inside_the_folder_are_fine(service):
    os.symlink("weights.bin", service / "model" / "alias.bin")
    assert load_service(service, "svc").name == "svc"


def test_a_deeply_nested_v1_file_is_a_config_error(service):
    (service / "deploymentconfig.json").write_text('{"computeType": "AKS", "tags": ' + "[" * 5000 + "]" * 5000 + "}")
    assert "nested deeper" in folder_issues(service)["path"]


# ----------------------------------------------------------------------------- files the CLI reads


@pytest.mark.parametrize("stack", ["../x", "a/b", "..", ""])
def test_stack_names_cannot_leave_the_stacks_folder(stack):
    with pytest.raises(ConfigError, match="not a stack name"):
        read_stack_file(stack)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[[[", "is not a keys file"),
        ('{"diabetes": "ab"}', "list of two keys"),
        ('{"diabetes": ["ab", "cd"]}', "must be 16-256 characters"),
        ('["x"]', "must be an object"),
    ],
)
def test_a_corrupt_local_keys_file_is_reported_with_its_path(tmp_path, content, fragment):
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=fragment) as excinfo:
        stored_keys(path)
    assert str(path) in str(excinfo.value) and "delete" in str(excinfo.value)
