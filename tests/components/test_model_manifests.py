"""The pure builders of a model service's Kubernetes objects, called directly: no Pulumi, no mocks.

Each test loads the sample service (with v1 overrides) and asserts what its deploymentconfig.json
becomes in the pod, the Service, the NetworkPolicies and the PDB; the full objects pass the Kubernetes
schema strictly.
"""

from __future__ import annotations

import ast
import base64
import inspect

import kubernetes_validate
import pytest

from aksinf_runtime import environment as runtime_env
from components import model_manifests as manifests
from contract.loading import validate_stack_config
from contract.service import ModelService, load_service
from contract.stack import PROJECT_ROOT, ModelEntry, StackConfig
from router.discovery import (
    MODEL_SERVICE_LABEL,
    ROUTER_APP,
    ROUTER_NAMESPACE,
    SECRET_KEYS,
    discover,
)

KUBERNETES_VERSION = "1.34"
SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"
ADMINS = ["00000000-0000-0000-0000-000000000001"]
IMAGE = "aksinfdev.azurecr.io/aksinf/scorer@sha256:" + "0" * 64
MODEL_DATA_URL = "https://stmodeldata.blob.core.windows.net/modeldata"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
NO_COLLECTION = {"dataCollection": {"storageEnabled": False}}


def sample(overrides: dict | None = None) -> ModelService:
    return load_service(SAMPLE, "scorer", overrides)


@pytest.fixture(scope="module")
def devtest() -> StackConfig:
    return validate_stack_config({"purpose": "DevTest", "cluster": {"adminGroupObjectIds": ADMINS}}, "westeurope")


@pytest.fixture(scope="module")
def fastprod() -> StackConfig:
    return validate_stack_config({"purpose": "FastProd", "cluster": {"systemPool": {"count": 3}, "adminGroupObjectIds": ADMINS}}, "westeurope")


def pod(service: ModelService, config: StackConfig, *, telemetry: bool = False, model_data_url: str | None = None) -> dict:
    return manifests.model_pod_spec(service, config, IMAGE, telemetry=telemetry, model_data_url=model_data_url)


def env(container: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in container["env"]}


def validate(api_version: str, kind: str, **fields) -> None:
    kubernetes_validate.validate({"apiVersion": api_version, "kind": kind, **fields}, KUBERNETES_VERSION, strict=True)


def test_the_module_is_pure_it_imports_no_pulumi():
    tree = ast.parse(inspect.getsource(manifests))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported and not any(name.split(".")[0].startswith("pulumi") for name in imported), imported


def test_requests_come_from_v1_cpu_and_memory_and_limits_from_the_v1_limits():
    resources = manifests.container_resources(sample().deployment)  # cpu 0.25, memoryInGB 0.5, limits 1 and 1
    assert resources == {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}}


def test_limits_default_to_the_requests():
    service = sample({"containerResourceRequirements": {"cpu": 1.5, "memoryInGB": 3, "cpuLimit": None, "memoryInGBLimit": None}})
    resources = manifests.container_resources(service.deployment)
    assert resources["requests"] == resources["limits"] == {"cpu": "1500m", "memory": "3072Mi"}


def test_gpu_cores_are_requested_and_limited_as_nvidia_gpus():
    resources = manifests.container_resources(sample({"gpuCores": 2}).deployment)
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "2"
    assert "nvidia.com/gpu" not in manifests.container_resources(sample().deployment)["limits"]


def test_probes_follow_the_v1_liveness_requirements():
    requirements = {"initialDelaySeconds": 95, "periodSeconds": 20, "timeoutSeconds": 4, "failureThreshold": 5}
    probes = manifests.container_probes(sample({"livenessProbeRequirements": requirements}).deployment)
    assert probes["livenessProbe"] == {
        "httpGet": {"path": "/", "port": "http"},
        "initialDelaySeconds": 95,
        "periodSeconds": 20,
        "timeoutSeconds": 4,
        "successThreshold": 1,
        "failureThreshold": 5,
    }
    assert probes["readinessProbe"]["failureThreshold"] == 1 and probes["readinessProbe"]["initialDelaySeconds"] == 1
    # The startup budget is v1's initial delay: 95 s // 20 s = 4 failed probes before the replica is restarted.
    assert probes["startupProbe"]["failureThreshold"] == 4 and probes["startupProbe"]["initialDelaySeconds"] == 1
    assert probes["startupProbe"]["periodSeconds"] == 20


def test_the_probe_keeps_an_explicit_failure_threshold():
    assert manifests.probe(sample().deployment)["failureThreshold"] == 3  # v1's default
    assert manifests.probe(sample().deployment, failure_threshold=7)["failureThreshold"] == 7


def test_the_container_environment_uses_the_runtime_names(devtest):
    service = sample({"scoringTimeoutMs": 400_000, "maxConcurrentRequestsPerContainer": 4, **NO_COLLECTION})
    container = pod(service, devtest)["containers"][0]
    assert [(v["name"], v["value"]) for v in container["env"]] == [
        (runtime_env.WORKER_COUNT, "4"),
        (runtime_env.SCORING_TIMEOUT_MS, "400000"),
        (runtime_env.WORKER_TIMEOUT, "405"),  # the scoring timeout plus 5 s: longer than v1's 300 s
        (runtime_env.SERVICE_NAME, "scorer"),
    ]
    assert container["image"] == IMAGE


def test_the_grace_period_outlasts_the_worker_timeout(devtest):
    assert pod(sample(), devtest)["terminationGracePeriodSeconds"] == 310  # v1's 300 s worker timeout + 10
    assert pod(sample({"scoringTimeoutMs": 400_000}), devtest)["terminationGracePeriodSeconds"] == 415


def test_telemetry_reads_its_key_from_the_telemetry_secret(devtest):
    variables = env(pod(sample(), devtest, telemetry=True)["containers"][0])
    assert variables[runtime_env.APP_INSIGHTS_ENABLED]["value"] == "true"
    assert variables[runtime_env.APP_INSIGHTS_KEY]["valueFrom"] == {
        "secretKeyRef": {"name": "model-scorer-appinsights", "key": manifests.TELEMETRY_SECRET_KEY}
    }
    assert runtime_env.APP_INSIGHTS_KEY not in env(pod(sample(), devtest)["containers"][0])


def test_model_data_env_and_spool_only_when_collecting(devtest):
    collecting = pod(sample(), devtest, model_data_url=MODEL_DATA_URL)
    variables = env(collecting["containers"][0])
    assert variables[runtime_env.MODELDATA_ENABLED]["value"] == "true"
    assert variables[runtime_env.MODELDATA_DESTINATION]["value"] == MODEL_DATA_URL
    assert variables[runtime_env.MODELDATA_SPOOL]["value"] == manifests.MODELDATA_SPOOL
    assert int(variables[runtime_env.MODELDATA_SPOOL_LIMIT_BYTES]["value"]) == int(0.9 * 1024**3)  # 90 % of the 1 GiB emptyDir
    assert {"name": "modeldata-spool", "emptyDir": {"sizeLimit": "1Gi"}} in collecting["volumes"]
    assert {"name": "modeldata-spool", "mountPath": manifests.MODELDATA_SPOOL} in collecting["containers"][0]["volumeMounts"]

    quiet = pod(sample(NO_COLLECTION), devtest)
    assert not any(name.startswith(("AKSINF_MODELDATA", "AML_MODEL_DC")) for name in env(quiet["containers"][0]))
    assert [v["name"] for v in quiet["volumes"]] == ["tmp"]
    assert quiet["containers"][0]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_only_collecting_pods_use_their_workload_identity(devtest):
    collecting = manifests.deployment_spec(sample(), devtest, IMAGE, telemetry=False, model_data_url=MODEL_DATA_URL)
    quiet = manifests.deployment_spec(sample(NO_COLLECTION), devtest, IMAGE, telemetry=False, model_data_url=None)
    assert collecting["template"]["metadata"]["labels"][manifests.WORKLOAD_IDENTITY_USE] == "true"
    assert manifests.WORKLOAD_IDENTITY_USE not in quiet["template"]["metadata"]["labels"]
    account = manifests.service_account_metadata(sample(), devtest, CLIENT_ID)
    assert account["name"] == "model-scorer" and account["annotations"] == {manifests.WORKLOAD_IDENTITY_CLIENT_ID: CLIENT_ID}
    assert "annotations" not in manifests.service_account_metadata(sample(NO_COLLECTION), devtest, None)


def test_gpu_services_tolerate_the_gpu_taint_and_select_gpu_nodes(devtest):
    gpu = pod(sample({"gpuCores": 1}), devtest)
    assert gpu["tolerations"] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    assert gpu["nodeSelector"] == {"aks-inference/accelerator": "gpu"}
    cpu = pod(sample(), devtest)
    assert "tolerations" not in cpu and "nodeSelector" not in cpu


def test_replicas_spread_across_nodes_only_in_production(devtest, fastprod):
    assert "topologySpreadConstraints" not in pod(sample(), devtest)
    [spread] = pod(sample(), fastprod)["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"] == {"matchLabels": {"app.kubernetes.io/name": "model-scorer"}}


def test_initial_replicas_are_fixed_on_devtest_and_the_minimum_in_production(devtest, fastprod):
    service = sample({"autoScaler": {"minReplicas": 2, "maxReplicas": 5}})
    assert manifests.deployment_spec(service, fastprod, IMAGE, telemetry=False, model_data_url=None)["replicas"] == 2
    fixed = sample({"autoScaler": None, "numReplicas": 3})
    assert manifests.deployment_spec(fixed, devtest, IMAGE, telemetry=False, model_data_url=None)["replicas"] == 3


def test_labels_carry_discovery_and_purpose(devtest, fastprod):
    assert manifests.workload_labels(sample(), devtest) == {
        "app.kubernetes.io/name": "model-scorer",
        "app.kubernetes.io/part-of": "aks-inference",
        MODEL_SERVICE_LABEL: "true",
        "aks-inference/purpose": "DevTest",
    }
    assert manifests.workload_labels(sample(), fastprod)["aks-inference/purpose"] == "FastProd"
    assert manifests.object_metadata("model-scorer", sample({"namespace": "team-a"}), devtest)["namespace"] == "team-a"


def test_only_router_pods_reach_the_model_port():
    [rule] = manifests.ingress_policy_spec(sample())["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": manifests.MODEL_PORT}]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ROUTER_NAMESPACE}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": ROUTER_APP}},
        }
    ]
    assert manifests.ingress_policy_spec(sample())["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "model-scorer"}}


@pytest.mark.parametrize("calls_azure", [False, True], ids=["quiet", "collecting-or-telemetry"])
def test_model_pods_reach_dns_and_only_when_they_call_azure_https_outside_imds(calls_azure):
    policy = manifests.egress_policy_spec(sample(), calls_azure=calls_azure)
    assert policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "model-scorer"}} and policy["policyTypes"] == ["Egress"]
    dns = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    https = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}], "ports": [{"protocol": "TCP", "port": 443}]}
    # Nothing else: no router port (status, admin, scoring), no other model, no instance metadata service.
    assert policy["egress"] == ([dns, https] if calls_azure else [dns])


def test_both_policies_are_named_for_what_they_do(devtest):
    assert manifests.ingress_policy_metadata(sample(), devtest)["name"] == "model-scorer-from-router-only"
    assert manifests.egress_policy_metadata(sample(), devtest)["name"] == "model-scorer-restricted-egress"
    assert manifests.egress_policy_metadata(sample({"namespace": "team-a"}), devtest)["namespace"] == "team-a"


def test_the_disruption_budget_evicts_one_replica_at_a_time():
    assert manifests.disruption_budget_spec(sample()) == {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "model-scorer"}}}


def test_the_router_discovers_the_service_and_its_keys(fastprod):
    service = sample({"scoringTimeoutMs": 4000, "namespace": "team-a"})
    keys = ("p" * 32, "s" * 32)
    secret = {
        "metadata": manifests.object_metadata(manifests.keys_secret_name(service), service, fastprod),
        "data": {name: base64.b64encode(key.encode()).decode() for name, key in zip(SECRET_KEYS, keys)},
    }
    [found] = discover([{"metadata": manifests.service_metadata(service, fastprod, ["a.pkl", "b/weights.bin", "b/vocab.txt"])}], [], [secret])
    assert (found.route.name, found.route.namespace, found.route.keys, found.route.scoring_timeout_ms) == ("scorer", "team-a", keys, 4000)
    assert found.deployment == "model-scorer"
    annotations = manifests.service_metadata(service, fastprod, ["a.pkl", "b/weights.bin", "b/vocab.txt"])["annotations"]
    assert annotations[manifests.MODEL_COUNT_ANNOTATION] == "2"  # top-level entries: a.pkl and b/


def test_only_key_auth_has_a_keys_secret():
    assert manifests.keys_secret_name(sample()) == "model-scorer-keys"
    assert manifests.keys_secret_name(sample({"authEnabled": False})) is None
    assert manifests.keys_secret_name(sample({"authEnabled": False, "tokenAuthEnabled": True})) is None


@pytest.mark.parametrize("overrides", [{}, {"gpuCores": 1, "appInsightsEnabled": True}, NO_COLLECTION], ids=["collecting", "gpu-telemetry", "quiet"])
def test_every_object_passes_strict_schema_validation(overrides, fastprod):
    service = sample(overrides)
    collecting = service.deployment.collects_model_data
    model_data_url = MODEL_DATA_URL if collecting else None
    telemetry = service.deployment.app_insights_enabled
    metadata = manifests.object_metadata("model-scorer", service, fastprod)
    spec = manifests.deployment_spec(service, fastprod, IMAGE, telemetry=telemetry, model_data_url=model_data_url)
    validate("apps/v1", "Deployment", metadata=metadata, spec=spec)
    validate("v1", "Service", metadata=manifests.service_metadata(service, fastprod, ["model.pkl"]), spec=manifests.service_spec(service))
    validate("v1", "ServiceAccount", metadata=manifests.service_account_metadata(service, fastprod, CLIENT_ID if collecting else None), automountServiceAccountToken=False)
    validate("networking.k8s.io/v1", "NetworkPolicy", metadata=manifests.ingress_policy_metadata(service, fastprod), spec=manifests.ingress_policy_spec(service))
    egress = manifests.egress_policy_spec(service, calls_azure=collecting or telemetry)
    validate("networking.k8s.io/v1", "NetworkPolicy", metadata=manifests.egress_policy_metadata(service, fastprod), spec=egress)
    validate("policy/v1", "PodDisruptionBudget", metadata=metadata, spec=manifests.disruption_budget_spec(service))


def test_schema_validation_would_catch_a_misspelled_pod_field(devtest):
    spec = manifests.deployment_spec(sample(), devtest, IMAGE, telemetry=False, model_data_url=None)
    spec["template"]["spec"]["containers"][0]["livenesProbe"] = spec["template"]["spec"]["containers"][0].pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate("apps/v1", "Deployment", metadata=manifests.object_metadata("model-scorer", sample(), devtest), spec=spec)


def test_same_inputs_give_equal_dicts(fastprod):
    def build() -> dict:
        return manifests.deployment_spec(sample({"gpuCores": 1}), fastprod, IMAGE, telemetry=True, model_data_url=MODEL_DATA_URL)

    first, second = build(), build()
    assert first == second and first is not second
    first["template"]["spec"]["containers"][0]["env"].clear()  # a caller mutating one result never leaks into the next
    assert build() == second


def test_the_endpoint_object_is_a_selector_less_service_and_its_versions_use_its_keys(devtest):
    entry = ModelEntry.model_validate({"name": "scorer", "path": "examples/models/diabetes", "versions": [
        {"name": "scorer-v1", "isDefault": True, "versionType": "control"}, {"name": "scorer-v2", "trafficPercentile": 10}]})
    endpoint = sample()
    service = {"apiVersion": "v1", "kind": "Service", "metadata": manifests.endpoint_metadata(endpoint, entry, devtest), "spec": manifests.endpoint_spec()}
    kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)
    assert "selector" not in service["spec"]
    assert service["metadata"]["labels"][MODEL_SERVICE_LABEL] == "true" and service["metadata"]["labels"]["aks-inference/model-endpoint"] == "true"
    assert service["metadata"]["annotations"]["aks-inference/keys-secret"] == manifests.keys_secret_name(endpoint) == "model-scorer-keys"
    version = load_service(SAMPLE, "scorer-v2", None)
    annotations = manifests.service_metadata(version, devtest, ["model.pkl"], endpoint)["annotations"]
    assert annotations["aks-inference/endpoint"] == "scorer" and annotations["aks-inference/keys-secret"] == "model-scorer-keys"
    assert "aks-inference/endpoint" not in manifests.service_metadata(version, devtest, ["model.pkl"])["annotations"]
