"""Model workloads on the cluster, offline: manifests validated against the Kubernetes schema, GPU placement,
no replica drift, key rotation, egress NetworkPolicies, and the discovery contract read back from what the
program creates."""

import base64
from pathlib import Path

import kubernetes_validate
import pytest

from router.discovery import SERVICE_NAME_LABEL, discover
from tests.pulumi_harness import run_program, with_config

KUBERNETES_VERSION = "1.34"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
PASSWORD = "random:index/randomPassword:RandomPassword"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
DIABETES = {"name": "diabetes", "path": "examples/models/diabetes"}
GPU_MODEL = {"name": "gpu-scorer", "path": "examples/models/diabetes", "deployment": {"gpuCores": 1}}


def manifests(run):
    return [r for r in run.custom_resources if r.type.startswith("kubernetes:") and not r.type.startswith("kubernetes:helm")]


@pytest.fixture(scope="module")
def prod_with_models(tmp_path_factory):
    from tests.certs import self_signed

    cert, key, _ = self_signed(tmp_path_factory.mktemp("tls"))
    tls = {"certificate": cert.read_text(), "key": key.read_text()}
    run = run_program("prod", with_config("prod", models=[DIABETES, GPU_MODEL], tls=tls), secret_keys=("aks-inference:tls",))
    assert run.error is None, run.error
    return run


@pytest.mark.parametrize("stack", ["dev", "prod", "prod-with-models"])
def test_every_manifest_passes_strict_schema_validation(stack, dev_run, prod_run, prod_with_models):
    run = {"dev": dev_run, "prod": prod_run, "prod-with-models": prod_with_models}[stack]
    found = manifests(run)
    assert found
    for resource in found:
        assert resource.inputs["metadata"]["name"]  # explicit names: no autonaming churn
        kubernetes_validate.validate(resource.inputs, KUBERNETES_VERSION, strict=True)


def test_schema_validation_would_catch_a_typo(dev_run):
    deployment = next(r for r in manifests(dev_run) if r.type == DEPLOYMENT)
    broken = {**deployment.inputs, "spec": {**deployment.inputs["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_model_deployment_shape(dev_run):
    deployment = dev_run.one(DEPLOYMENT, "aks-inference-models-diabetes-deployment")
    spec = deployment.inputs["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert deployment.ignore_changes == ["spec.replicas"] and spec["replicas"] == 1
    assert container["image"] == dev_run.one("docker:index/image:Image", "aks-inference-models-diabetes-image").outputs["repoDigest"]
    assert "@sha256:" in container["image"]
    assert container["resources"] == {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1000m", "memory": "1024Mi"}}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False and pod["securityContext"]["runAsNonRoot"] is True
    assert {e["name"]: e["value"] for e in container["env"] if not e["name"].startswith(("AKSINF_MODELDATA", "AML_MODEL_DC"))} == {
        "WORKER_COUNT": "1", "SCORING_TIMEOUT_MS": "5000", "WORKER_TIMEOUT": "300", "AKSINF_SERVICE_NAME": "diabetes",
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    assert "tolerations" not in pod and "topologySpreadConstraints" not in pod  # DevTest, no GPU


def test_gpu_service_lands_on_the_gpu_pool(prod_with_models):
    deployment = next(r for r in prod_with_models.of_type(DEPLOYMENT) if r.inputs["metadata"]["name"] == "model-gpu-scorer")
    pod = deployment.inputs["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"aks-inference/accelerator": "gpu"}
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"  # FastProd
    # Same conda file, two environment builds: the GPU service's is on a CUDA base image, the CPU one's is not.
    environments = [r for r in prod_with_models.of_type("docker:index/image:Image") if "environment" in r.name]
    bases = sorted(Path(r.inputs["build"]["dockerfile"]).read_text().split("FROM ", 1)[1].split()[0] for r in environments)
    assert len(bases) == 2 and sorted("cuda" in base for base in bases) == [False, True]
    assert not any(base.endswith(":latest") for base in bases)


def test_gpu_service_without_a_gpu_pool_is_refused():
    run = run_program("dev", with_config("dev", models=[GPU_MODEL]))
    assert "models[0].deployment.gpuCores: needs a GPU node pool" in str(run.error) and run.resources == []


def test_no_drift_across_runs(dev_run):
    again = run_program("dev")
    first = [(r.urn, r.inputs) for r in manifests(dev_run)]
    assert first == [(r.urn, r.inputs) for r in manifests(again)]
    assert [r.inputs for r in again.of_type("docker:index/image:Image")] == [r.inputs for r in dev_run.of_type("docker:index/image:Image")]


def test_rotating_one_key_changes_only_that_key():
    before = run_program("dev")
    after = run_program("dev", with_config("dev", models=[{**DIABETES, "keyRotation": {"primary": 1}}]))
    keys = lambda run: {r.name.rsplit("-", 2)[-2]: r for r in run.of_type(PASSWORD)}  # noqa: E731
    assert keys(before)["primary"].inputs["keepers"] != keys(after)["primary"].inputs["keepers"]
    assert keys(before)["secondary"].inputs == keys(after)["secondary"].inputs
    assert keys(before)["primary"].outputs["result"] != keys(after)["primary"].outputs["result"]
    secret = after.one(SECRET, "aks-inference-models-diabetes-keys")
    assert "stringData" in {p.split(".")[0] for p in secret.secret_paths}  # keys stay Pulumi secrets


def test_discovery_reads_exactly_what_the_program_creates(dev_run):
    """Both sides of the contract: the captured Service and Secret, plus the EndpointSlice Kubernetes would make."""
    service = dev_run.one(SERVICE, "aks-inference-models-diabetes-service")
    secret = dev_run.one(SECRET, "aks-inference-models-diabetes-keys")
    as_data = {k: base64.b64encode(v.encode()).decode() for k, v in secret.inputs["stringData"].items()}
    endpoint_slice = {
        "metadata": {"name": "model-diabetes-x", "namespace": "models", "labels": {SERVICE_NAME_LABEL: service.inputs["metadata"]["name"]}},
        "ports": [{"name": "http", "port": 5001}],
        "endpoints": [{"addresses": ["10.244.0.12"], "conditions": {"ready": True}}],
    }
    found = discover([service.inputs], [endpoint_slice], [{"metadata": secret.inputs["metadata"], "data": as_data}])
    assert len(found) == 1
    route = found[0].route
    assert (route.name, route.namespace, route.auth, route.scoring_timeout_ms, route.max_concurrent) == ("diabetes", "models", "key", 5000, 1)
    assert route.keys == (secret.inputs["stringData"]["primaryKey"], secret.inputs["stringData"]["secondaryKey"])
    assert found[0].deployment == dev_run.one(DEPLOYMENT, "aks-inference-models-diabetes-deployment").inputs["metadata"]["name"]
    assert (found[0].autoscale.enabled, found[0].autoscale.fixed_replicas) == (False, 1)  # DevTest: no autoscaling
    # Only router pods may reach the model pods.
    policy = dev_run.one(NETWORK_POLICY, "aks-inference-models-diabetes-from-router-only").inputs["spec"]
    assert policy["ingress"][0]["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "aks-inference-router"}}


def egress_of(run, service: str) -> list[dict]:
    return run.one(NETWORK_POLICY, f"aks-inference-models-{service}-restricted-egress").inputs["spec"]["egress"]


def test_model_pods_reach_dns_and_only_when_they_collect_or_send_telemetry_https_outside_imds(dev_run):
    """Exact egress lists: no rule admits a router port, another pod or the instance metadata service."""
    quiet = {"name": "quiet", "path": "examples/models/diabetes", "deployment": {"dataCollection": {"storageEnabled": False}}}
    telemetry = {**quiet, "name": "telemetry", "deployment": {**quiet["deployment"], "appInsightsEnabled": True}}
    run = run_program("dev", with_config("dev", models=[quiet, telemetry]))
    assert run.error is None, run.error
    dns = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    https = {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}], "ports": [{"protocol": "TCP", "port": 443}]}
    assert egress_of(run, "quiet") == [dns]
    assert egress_of(run, "telemetry") == [dns, https]
    assert egress_of(dev_run, "diabetes") == [dns, https]  # the sample collects model data
    policy = run.one(NETWORK_POLICY, "aks-inference-models-quiet-restricted-egress").inputs["spec"]
    assert policy["policyTypes"] == ["Egress"] and policy["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "model-quiet"}}


def test_enable_app_insights_wires_a_workspace_component_and_the_server_settings():
    run = run_program("dev", with_config("dev", models=[{**DIABETES, "deployment": {"appInsightsEnabled": True}}]))
    assert run.error is None, run.error
    component = run.one("azure-native:applicationinsights:Component")
    workspace = run.one("azure-native:operationalinsights:Workspace")
    assert component.inputs["workspaceResourceId"] == workspace.outputs["id"] and component.inputs["ingestionMode"] == "LogAnalytics"
    env = {e["name"]: e for e in run.one(DEPLOYMENT, "aks-inference-models-diabetes-deployment").inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AML_APP_INSIGHTS_ENABLED"]["value"] == "true"
    assert env["AML_APP_INSIGHTS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "model-diabetes-appinsights", "key": "instrumentationKey"}
    secret = run.one(SECRET, "aks-inference-models-diabetes-appinsights")
    assert secret.inputs["stringData"]["instrumentationKey"] == component.outputs["instrumentationKey"]
    assert "stringData" in {p.split(".")[0] for p in secret.secret_paths}
    for resource in manifests(run):
        kubernetes_validate.validate(resource.inputs, KUBERNETES_VERSION, strict=True)
