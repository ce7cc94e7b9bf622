"""Versioned endpoints on the cluster, offline (the real program under Pulumi mocks): every version deployed as a
model service of its own, the endpoint as one selector-less Service plus its keys, the discovery contract read
back from what the program creates, and a traffic change that touches the endpoint Service alone."""

from __future__ import annotations

import base64
import json

import kubernetes_validate
import pytest

from review.plan import diff, plan_document
from router.discovery import SERVICE_NAME_LABEL, discover, discover_endpoints
from tests.graph.test_workloads import (
    DEPLOYMENT,
    KUBERNETES_VERSION,
    NETWORK_POLICY,
    PASSWORD,
    SECRET,
    SERVICE,
    manifests,
)
from tests.pulumi_harness import run_program, with_config

PDB = "kubernetes:policy/v1:PodDisruptionBudget"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
IMAGE = "docker:index/image:Image"
SAMPLE = "examples/models/diabetes"
V1 = {"name": "diabetes-v1", "isDefault": True, "versionType": "control"}
V2 = {"name": "diabetes-v2", "trafficPercentile": 10, "deployment": {"scoringTimeoutMs": 9000}}
SHADOW = {"name": "diabetes-v3", "mirrorPercentile": 5}


def endpoint(*versions: dict, **extra) -> dict:
    return {"name": "diabetes", "path": SAMPLE, "versions": list(versions), **extra}


def run_with(*models: dict):
    run = run_program("dev", with_config("dev", models=list(models)))
    assert run.error is None, run.error
    return run


@pytest.fixture(scope="module")
def endpoint_run():
    return run_with(endpoint(V1, V2, SHADOW, rollout={"steps": [10, 50, 100], "analysisWindowSeconds": 60}))


def named(run, type_: str) -> dict[str, dict]:
    return {r.inputs["metadata"]["name"]: r.inputs for r in run.of_type(type_)}


def test_each_version_is_a_model_service_and_the_endpoint_is_no_workload(endpoint_run):
    versions = ["model-diabetes-v1", "model-diabetes-v2", "model-diabetes-v3"]
    assert sorted(named(endpoint_run, DEPLOYMENT)) == sorted([*versions, "aks-inference-router"])
    assert sorted(n for n in named(endpoint_run, SERVICE) if n.startswith("model-")) == sorted(["model-diabetes", *versions])
    assert sorted(n for n in named(endpoint_run, SERVICE_ACCOUNT) if n.startswith("model-")) == versions
    assert sorted(n for n in named(endpoint_run, PDB) if n.startswith("model-")) == versions
    policies = named(endpoint_run, NETWORK_POLICY)
    for version in versions:
        ingress = policies[f"{version}-from-router-only"]["spec"]
        assert ingress["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": version}}
        assert ingress["ingress"][0]["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "aks-inference-router"}}
        assert f"{version}-restricted-egress" in policies
    # Its own settings per version: v2's override reached its pods and its Service only.
    env = lambda name: {e["name"]: e.get("value") for e in named(endpoint_run, DEPLOYMENT)[name]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env("model-diabetes-v2")["SCORING_TIMEOUT_MS"] == "9000" and env("model-diabetes-v1")["SCORING_TIMEOUT_MS"] == "5000"
    assert env("model-diabetes-v2")["AKSINF_SERVICE_NAME"] == "diabetes-v2"  # the collector records the version's name
    for resource in manifests(endpoint_run):
        kubernetes_validate.validate(resource.inputs, KUBERNETES_VERSION, strict=True)


def test_the_endpoint_object_carries_the_versions_and_the_rollout(endpoint_run):
    service = named(endpoint_run, SERVICE)["model-diabetes"]
    assert "selector" not in service["spec"] and service["spec"]["ports"] == [{"name": "http", "port": 5001}]
    labels, annotations = service["metadata"]["labels"], service["metadata"]["annotations"]
    assert labels["aks-inference/model-service"] == "true" and labels["aks-inference/model-endpoint"] == "true"
    assert {k: v for k, v in annotations.items() if k not in ("aks-inference/versions", "aks-inference/rollout")} == {
        "aks-inference/service-name": "diabetes", "aks-inference/auth": "key", "aks-inference/keys-secret": "model-diabetes-keys"}
    assert json.loads(annotations["aks-inference/versions"]) == [
        {"name": "diabetes-v1", "trafficPercentile": None, "isDefault": True, "versionType": "control", "mirrorPercentile": 0},
        {"name": "diabetes-v2", "trafficPercentile": 10, "isDefault": False, "versionType": "treatment", "mirrorPercentile": 0},
        {"name": "diabetes-v3", "trafficPercentile": 0, "isDefault": False, "versionType": "treatment", "mirrorPercentile": 5},
    ]
    assert json.loads(annotations["aks-inference/rollout"]) == {
        "steps": [10, 50, 100], "analysisWindowSeconds": 60, "maxServerErrorRate": 0.01, "maxP99LatencyRatio": 1.5, "minRequests": 100}
    # One scoring URI: the endpoint's; a version is never served on its own.
    assert sorted(endpoint_run.outputs["services"]) == ["diabetes"]


def test_one_set_of_keys_the_endpoint_s_which_every_version_names(endpoint_run):
    assert [n for n in named(endpoint_run, SECRET) if n.endswith("-keys")] == ["model-diabetes-keys"]
    assert sorted(r.name for r in endpoint_run.of_type(PASSWORD)) == ["aks-inference-models-diabetes-primary-key", "aks-inference-models-diabetes-secondary-key"]
    services = named(endpoint_run, SERVICE)
    for version in ("diabetes-v1", "diabetes-v2", "diabetes-v3"):
        annotations = services[f"model-{version}"]["metadata"]["annotations"]
        assert annotations["aks-inference/endpoint"] == "diabetes" and annotations["aks-inference/keys-secret"] == "model-diabetes-keys"
        assert annotations["aks-inference/deployment"] == f"model-{version}"


def test_discovery_reads_the_endpoint_and_each_version_with_the_endpoint_s_keys(endpoint_run):
    """The endpoint and version Services and the endpoint's Secret as the program creates them, plus an
    EndpointSlice per version: the router's discovery serves exactly the configured endpoint."""
    secret = endpoint_run.one(SECRET, "aks-inference-models-diabetes-keys")
    as_data = {k: base64.b64encode(v.encode()).decode() for k, v in secret.inputs["stringData"].items()}
    versions = [named(endpoint_run, SERVICE)[f"model-diabetes-v{i}"] for i in (1, 2, 3)]
    slices = [{
        "metadata": {"name": f"{s['metadata']['name']}-x", "namespace": "models", "labels": {SERVICE_NAME_LABEL: s["metadata"]["name"]}},
        "ports": [{"name": "http", "port": 5001}], "endpoints": [{"addresses": [f"10.244.0.{i}"], "conditions": {"ready": True}}],
    } for i, s in enumerate(versions, start=10)]
    found = {d.route.name: d for d in discover(versions, slices, [{"metadata": secret.inputs["metadata"], "data": as_data}])}
    assert sorted(found) == ["diabetes-v1", "diabetes-v2", "diabetes-v3"]
    keys = (secret.inputs["stringData"]["primaryKey"], secret.inputs["stringData"]["secondaryKey"])
    assert all(d.route.keys == keys and not d.route.problems for d in found.values())
    assert (found["diabetes-v2"].route.scoring_timeout_ms, found["diabetes-v2"].deployment) == (9000, "model-diabetes-v2")
    assert all(d.route.endpoint == "diabetes" for d in found.values())
    objects = [named(endpoint_run, SERVICE)["model-diabetes"], *versions]
    secrets = [{"metadata": secret.inputs["metadata"], "data": as_data}]
    [read] = discover_endpoints(objects, secrets, discover(objects, slices, secrets))
    assert read.route.problems == () and read.route.keys == keys and read.route.default == "diabetes-v1"
    assert [(v.version, v.weight, v.mirror_percent) for v in read.route.versions] == [("diabetes-v1", 90, 0), ("diabetes-v2", 10, 0), ("diabetes-v3", 0, 5)]
    assert (read.rollout.control, read.rollout.treatment, read.rollout.steps, read.rollout.window_seconds) == ("diabetes-v1", "diabetes-v2", (10, 50, 100), 60)


def test_versions_share_one_environment_build_and_collect_model_data_each(endpoint_run):
    environments = [r for r in endpoint_run.of_type(IMAGE) if "environment" in r.name]
    services = [r for r in endpoint_run.of_type(IMAGE) if "environment" not in r.name and "router" not in r.name]
    assert len(environments) == 1 and len(services) == 3
    subjects = sorted(r.inputs["subject"] for r in endpoint_run.of_type("azure-native:managedidentity:FederatedIdentityCredential"))
    assert subjects == [f"system:serviceaccount:models:model-diabetes-v{i}" for i in (1, 2, 3)]


def test_a_plain_service_beside_an_endpoint_is_unchanged(endpoint_run):
    plain = {"name": "scorer", "path": SAMPLE}
    alone, beside = run_with(plain), run_with(plain, endpoint(V1, V2))
    of = lambda run: {r.urn: r.inputs for r in manifests(run) if "scorer" in r.urn}
    assert of(alone) and of(alone) == of(beside)


def plan_of(*models: dict) -> dict:
    return plan_document(run_with(*models))


@pytest.mark.parametrize("changed", [
    endpoint(V1, {**V2, "trafficPercentile": 25}, SHADOW),  # a new treatment share
    endpoint(V1, V2, {**SHADOW, "mirrorPercentile": 20}),  # a new mirror share
    endpoint(V1, V2, SHADOW, rollout={"steps": [10, 100]}),  # a rollout policy
])
def test_a_traffic_change_is_one_update_of_the_endpoint_service_only(changed):
    before, after = plan_of(endpoint(V1, V2, SHADOW)), plan_of(changed)
    changes = diff(before, after)
    assert [(mark, urn.rsplit("::", 1)[-1]) for mark, urn, _, _ in changes] == [("~", "aks-inference-models-diabetes-service")]
    [(_, urn, keys, _)] = changes
    assert urn.split("::")[2].endswith("aks-inference:workloads:ModelEndpoint$kubernetes:core/v1:Service")
    assert set(keys) <= {"metadata.annotations.aks-inference/versions", "metadata.annotations.aks-inference/rollout"}


def test_the_router_may_read_the_endpoint_keys_and_scale_the_versions_and_nothing_that_does_not_exist(endpoint_run):
    [role] = [r.inputs for r in endpoint_run.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role") if r.inputs["metadata"]["namespace"] == "models"]
    named_rights = {resource: sorted(rule["resourceNames"]) for rule in role["rules"] if "resourceNames" in rule for resource in rule["resources"]}
    versions = ["model-diabetes-v1", "model-diabetes-v2", "model-diabetes-v3"]
    assert named_rights == {"secrets": ["model-diabetes-keys"], "deployments": versions, "deployments/scale": versions}
    assert "model-diabetes-keys" in named(endpoint_run, SECRET)
