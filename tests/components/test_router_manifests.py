"""The router's manifests as plain data: no Pulumi, no mocks, each object checked against the 1.34 schema."""

from __future__ import annotations

import kubernetes_validate
import pytest

from components.router_manifests import (
    TLS_SECRET,
    deployment_spec,
    hpa_spec,
    model_namespace_rules,
    object_metadata,
    own_namespace_rules,
    pdb_spec,
    pod_spec,
    router_environment,
    router_labels,
    router_replicas,
    scoring_base_url,
    service_annotations,
    service_spec,
)
from contract.loading import validate_stack_config
from contract.stack import StackConfig
from router.discovery import ROUTER_APP
from router.environment import RouterEnvironment
from tests.certs import self_signed

KUBERNETES_VERSION = "1.34"
ADMINS = ["00000000-0000-0000-0000-000000000001"]
AUTH = {"tenantId": "11111111-1111-1111-1111-111111111111", "audience": "api://aks-inference"}
IMAGE = "aksinfdev.azurecr.io/aksinf/router@sha256:" + "0" * 64
MODEL_NAMESPACES = ["models", "models-gpu"]
READ = ["get", "list", "watch"]


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    cert, key, _ = self_signed(tmp_path_factory.mktemp("tls"), "scoring.example.com")
    return {"certificate": cert.read_text(), "key": key.read_text()}


def dev_test(**sections) -> StackConfig:
    return validate_stack_config({"purpose": "DevTest", "cluster": {"adminGroupObjectIds": ADMINS}, **sections}, "westeurope")


def fast_prod(**sections) -> StackConfig:
    cluster = {"systemPool": {"count": 3}, "adminGroupObjectIds": ADMINS}
    return validate_stack_config({"purpose": "FastProd", "cluster": cluster, **sections}, "westeurope")


def manifests(config: StackConfig) -> list[dict]:
    """The Deployment, HPA, PDB and Service as the deployer registers them, with apiVersion and kind."""
    replicas = router_replicas(config)
    pod = pod_spec(router_environment(config, MODEL_NAMESPACES), config.tls.enabled, IMAGE)
    service_metadata = {**object_metadata(ROUTER_APP), "annotations": service_annotations(config)}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": object_metadata(ROUTER_APP), "spec": deployment_spec(replicas, pod)},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": object_metadata(ROUTER_APP), "spec": hpa_spec(replicas)},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": object_metadata(ROUTER_APP), "spec": pdb_spec(replicas)},
        {"apiVersion": "v1", "kind": "Service", "metadata": service_metadata, "spec": service_spec(config.tls.enabled)},
    ]


def containers(config: StackConfig) -> dict[str, dict]:
    pod = pod_spec(router_environment(config, MODEL_NAMESPACES), config.tls.enabled, IMAGE)
    return {container["name"]: container for container in pod["containers"]}


# --------------------------------------------------------------------------- RBAC


def test_model_namespaces_are_read_and_only_scale_is_written():
    verbs = {(rule["apiGroups"][0], resource): rule["verbs"] for rule in model_namespace_rules() for resource in rule["resources"]}
    assert verbs == {
        ("", "services"): READ,
        ("", "secrets"): READ,
        ("discovery.k8s.io", "endpointslices"): READ,
        ("apps", "deployments"): READ,
        ("apps", "deployments/scale"): ["get", "patch", "update"],
    }


def test_own_namespace_holds_the_lease_and_lists_peers():
    verbs = {(rule["apiGroups"][0], resource): rule["verbs"] for rule in own_namespace_rules() for resource in rule["resources"]}
    assert verbs == {("coordination.k8s.io", "leases"): ["get", "create", "update"], ("discovery.k8s.io", "endpointslices"): ["list"]}


def test_role_metadata_names_the_model_namespace():
    assert object_metadata(ROUTER_APP, "models-gpu") == {"name": ROUTER_APP, "namespace": "models-gpu", "labels": router_labels()}
    assert object_metadata(TLS_SECRET)["namespace"] == "aks-inference"


# --------------------------------------------------------------------------- scaling


@pytest.mark.parametrize(
    ("config", "replicas", "min_available"),
    [
        (dev_test(), 1, 1),
        (fast_prod(), 3, 2),
        (dev_test(router={"replicas": 2}), 2, 1),
        (fast_prod(router={"replicas": 5}), 5, 4),
    ],
    ids=["devtest", "production", "devtest-configured", "production-configured"],
)
def test_replicas_bound_the_hpa_and_the_pdb(config, replicas, min_available):
    deployment, hpa, pdb, _ = manifests(config)
    assert router_replicas(config) == replicas == deployment["spec"]["replicas"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (replicas, 3 * replicas)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": ROUTER_APP}
    assert pdb["spec"]["minAvailable"] == min_available


def test_every_selector_picks_the_router_pods(tls_pair):
    deployment, _, pdb, service = manifests(fast_prod(tls=tls_pair))
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    anti_affinity = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        pdb["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
        anti_affinity[0]["podAffinityTerm"]["labelSelector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector == {"app.kubernetes.io/name": ROUTER_APP} and selector.items() <= pod_labels.items()
    assert anti_affinity[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


# --------------------------------------------------------------------------- pod


def test_both_containers_run_the_image_with_their_role_and_the_environment_contract():
    config = dev_test(auth=AUTH)
    environment = router_environment(config, MODEL_NAMESPACES)
    assert environment.model_namespaces == ("models", "models-gpu")
    assert (environment.jwt_issuer, environment.jwt_audience, environment.jwks_uri) == (config.auth.issuer, "api://aks-inference", config.auth.jwks_uri)
    by_name = containers(config)
    assert [by_name["control-plane"]["args"], by_name["envoy"]["args"]] == [["control-plane"], ["envoy"]]
    for container in by_name.values():
        assert container["image"] == IMAGE
        assert container["env"] == environment.as_env()
        assert container["securityContext"]["readOnlyRootFilesystem"] and container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_without_auth_no_token_settings_reach_the_pod():
    environment = router_environment(dev_test(), MODEL_NAMESPACES)
    assert environment.jwt_issuer is environment.jwt_audience is environment.jwks_uri is None
    assert environment.as_env() == RouterEnvironment(model_namespaces=("models", "models-gpu"), listen_port=8080).as_env()


def test_tls_serves_8443_behind_443_and_mounts_the_secret(tls_pair):
    config = fast_prod(tls=tls_pair)
    environment = router_environment(config, MODEL_NAMESPACES)
    assert environment.listen_port == 8443
    envoy = containers(config)["envoy"]
    assert {port["name"]: port["containerPort"] for port in envoy["ports"]} == {"scoring": 8443, "admin": environment.admin_port}
    assert {"name": "tls", "mountPath": environment.tls_dir, "readOnly": True} in envoy["volumeMounts"]
    pod = manifests(config)[0]["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": TLS_SECRET}} in pod["volumes"]
    assert service_spec(True)["ports"] == [{"name": "https", "port": 443, "targetPort": "scoring"}]


def test_plain_http_serves_8080_behind_80_without_a_tls_volume():
    config = fast_prod(tls={"allowInsecure": True})
    envoy = containers(config)["envoy"]
    assert {port["name"]: port["containerPort"] for port in envoy["ports"]}["scoring"] == 8080
    pod = manifests(config)[0]["spec"]["template"]["spec"]
    assert [volume["name"] for volume in pod["volumes"]] == ["envoy-config"]
    assert [mount["name"] for mount in envoy["volumeMounts"]] == ["envoy-config"]
    assert service_spec(False)["ports"] == [{"name": "http", "port": 80, "targetPort": "scoring"}]


# --------------------------------------------------------------------------- Service and URL


def test_service_annotations_follow_the_router_config():
    internal = dev_test(router={"loadBalancer": "internal", "dnsLabel": "contoso-scoring"})
    assert service_annotations(internal) == {
        "service.beta.kubernetes.io/azure-load-balancer-internal": "true",
        "service.beta.kubernetes.io/azure-dns-label-name": "contoso-scoring",
    }
    assert service_annotations(dev_test(router={"loadBalancer": "public"})) == {}
    assert service_annotations(fast_prod(tls={"allowInsecure": True})) == {}


def test_devtest_routers_are_internal_unless_made_public():
    """DevTest serves plain HTTP: its keys never cross the internet unless the stack says so."""
    internal = {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}
    assert service_annotations(dev_test()) == internal
    assert dev_test().router_load_balancer == "internal"
    assert fast_prod().router_load_balancer == "public"
    assert service_spec(False)["type"] == "LoadBalancer" and service_spec(False)["externalTrafficPolicy"] == "Local"


def test_base_url_prefers_the_cname_then_the_dns_label_then_the_ip(tls_pair):
    named = fast_prod(tls={**tls_pair, "cname": "scoring.example.com"}, router={"dnsLabel": "contoso-scoring"})
    assert scoring_base_url(named, "20.0.0.1") == "https://scoring.example.com"
    labelled = dev_test(router={"dnsLabel": "contoso-dev"})
    assert scoring_base_url(labelled) == "http://contoso-dev.westeurope.cloudapp.azure.com"
    assert scoring_base_url(fast_prod(tls=tls_pair, router={"dnsLabel": "contoso-scoring"})) == "https://contoso-scoring.westeurope.cloudapp.azure.com"
    assert scoring_base_url(dev_test()) is None  # only the LoadBalancer can tell, and it has not yet
    assert scoring_base_url(dev_test(), "20.0.0.1") == "http://20.0.0.1"


# --------------------------------------------------------------------------- schema and purity


@pytest.mark.parametrize("variant", ["devtest", "production-tls-internal"])
def test_manifests_pass_the_kubernetes_schema(variant, tls_pair):
    config = dev_test() if variant == "devtest" else fast_prod(tls=tls_pair, router={"loadBalancer": "internal", "dnsLabel": "contoso-scoring"}, auth=AUTH)
    for manifest in manifests(config):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_schema_validation_would_catch_a_typo():
    deployment = manifests(dev_test())[0]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_same_inputs_give_equal_independent_dicts(tls_pair):
    config = fast_prod(tls=tls_pair)
    first, second = manifests(config), manifests(config)
    assert first == second
    first[0]["spec"]["template"]["metadata"]["labels"]["changed"] = "yes"
    first[3]["spec"]["selector"]["changed"] = "yes"
    assert manifests(config) == second and "changed" not in router_labels()
