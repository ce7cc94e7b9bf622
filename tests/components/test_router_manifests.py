"""The router's manifests as plain data: no Pulumi, no mocks, each object checked against the 1.34 schema."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from kubernetes.config.incluster_config import (
    SERVICE_CERT_FILENAME,
    SERVICE_TOKEN_FILENAME,
)

from components.model_manifests import MODEL_PORT
from components.router_manifests import (
    ENVOY_CPU_LIMIT,
    ENVOY_HEAP_BYTES,
    ENVOY_MEMORY_LIMIT_BYTES,
    SERVICE_ACCOUNT_DIR,
    TLS_SECRET,
    deployment_spec,
    hpa_spec,
    model_namespace_rules,
    network_policies,
    object_metadata,
    own_namespace_rules,
    pdb_spec,
    pod_spec,
    role_ref,
    router_environment,
    router_labels,
    router_replicas,
    scoring_base_url,
    service_account_subjects,
    service_annotations,
    service_spec,
    services_by_namespace,
    state_config_map,
)
from contract.loading import validate_stack_config
from contract.service import ModelService, load_service
from contract.stack import PROJECT_ROOT, StackConfig
from router.discovery import MODEL_SERVICE_LABEL, ROUTER_APP
from router.environment import RouterEnvironment
from router.state import STATE_CONFIGMAP, STATE_KEY, RouterState, parse_state
from tests.certs import self_signed

KUBERNETES_VERSION = "1.34"
ADMINS = ["00000000-0000-0000-0000-000000000001"]
AUTH = {"tenantId": "11111111-1111-1111-1111-111111111111", "audience": "api://aks-inference"}
IMAGE = "aksinfdev.azurecr.io/aksinf/router@sha256:" + "0" * 64
MODEL_NAMESPACES = ["models", "models-gpu"]
READ = ["get", "list", "watch"]
SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"  # key auth
TOKEN_AUTH = {"authEnabled": False, "tokenAuthEnabled": True}
ROUTER_PODS = {"matchLabels": {"app.kubernetes.io/name": ROUTER_APP}}
ROUTER_PODS_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "aks-inference"}}, "podSelector": ROUTER_PODS}
IMDS = "169.254.169.254/32"


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    cert, key, _ = self_signed(tmp_path_factory.mktemp("tls"), "scoring.example.com")
    return {"certificate": cert.read_text(), "key": key.read_text()}


def dev_test(**sections) -> StackConfig:
    return validate_stack_config({"purpose": "DevTest", "cluster": {"adminGroupObjectIds": ADMINS}, **sections}, "westeurope")


def fast_prod(**sections) -> StackConfig:
    cluster = {"systemPool": {"count": 3}, "adminGroupObjectIds": ADMINS}
    return validate_stack_config({"purpose": "FastProd", "cluster": cluster, **sections}, "westeurope")


def service(name: str, namespace: str = "models", overrides: dict | None = None) -> ModelService:
    return load_service(SAMPLE, name, {"namespace": namespace, **(overrides or {})})


def manifests(config: StackConfig) -> list[dict]:
    """The Deployment, HPA, PDB, Service, then the NetworkPolicies and the model-namespace Roles and
    RoleBindings as the deployer registers them, with apiVersion and kind."""
    replicas = router_replicas(config)
    environment = router_environment(config, MODEL_NAMESPACES)
    pod = pod_spec(environment, config.tls.enabled, IMAGE)
    service_metadata = {**object_metadata(ROUTER_APP), "annotations": service_annotations(config)}
    services = [service("scorer"), service("chat", "models-gpu", TOKEN_AUTH)]
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": object_metadata(ROUTER_APP), "spec": deployment_spec(replicas, pod)},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": object_metadata(ROUTER_APP), "spec": hpa_spec(replicas)},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": object_metadata(ROUTER_APP), "spec": pdb_spec(replicas)},
        {"apiVersion": "v1", "kind": "Service", "metadata": service_metadata, "spec": service_spec(config.tls.enabled)},
        {"apiVersion": "v1", "kind": "ConfigMap", **state_config_map()},
        *({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **policy} for policy in network_policies(environment, config.tls.enabled).values()),
        *(
            manifest
            for namespace, in_namespace in services_by_namespace(services).items()
            for manifest in (
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": object_metadata(ROUTER_APP, namespace), "rules": model_namespace_rules(in_namespace)},
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": object_metadata(ROUTER_APP, namespace), "roleRef": role_ref(), "subjects": service_account_subjects()},
            )
        ),
    ]


def containers(config: StackConfig) -> dict[str, dict]:
    pod = pod_spec(router_environment(config, MODEL_NAMESPACES), config.tls.enabled, IMAGE)
    return {container["name"]: container for container in pod["containers"]}


# --------------------------------------------------------------------------- RBAC


def rights(rules: list[dict]) -> dict[tuple[str, str], tuple[list[str], list[str] | None]]:
    """(apiGroup, resource) -> (verbs, resourceNames or None when the rule covers every object)."""
    return {(rule["apiGroups"][0], resource): (rule["verbs"], rule.get("resourceNames")) for rule in rules for resource in rule["resources"]}


def test_discovery_lists_and_everything_else_is_named():
    """Lists only what discovery must list; the keys Secrets are read by name, only the model Deployments scaled."""
    services = [service("scorer"), service("chat", overrides=TOKEN_AUTH), service("ranker")]
    assert rights(model_namespace_rules(services)) == {
        ("", "services"): (READ, None),
        ("discovery.k8s.io", "endpointslices"): (READ, None),
        ("", "secrets"): (["get"], ["model-ranker-keys", "model-scorer-keys"]),  # not model-chat's: token auth has none
        ("apps", "deployments"): (["get"], ["model-chat", "model-ranker", "model-scorer"]),
        ("apps", "deployments/scale"): (["get", "patch", "update"], ["model-chat", "model-ranker", "model-scorer"]),
    }


def test_a_namespace_without_key_auth_gets_no_secrets_rule():
    rules = model_namespace_rules([service("chat", overrides=TOKEN_AUTH), service("open", overrides={"authEnabled": False})])
    assert "secrets" not in {resource for rule in rules for resource in rule["resources"]}
    assert rights(rules)[("apps", "deployments/scale")][1] == ["model-chat", "model-open"]


def test_roles_follow_the_namespaces_of_the_services():
    services = [service("scorer", "models-gpu"), service("chat", "models"), service("ranker", "models-gpu")]
    by_namespace = services_by_namespace(services)
    assert {namespace: [s.name for s in found] for namespace, found in by_namespace.items()} == {"models": ["chat"], "models-gpu": ["ranker", "scorer"]}
    assert list(by_namespace) == ["models", "models-gpu"]


def test_own_namespace_holds_the_lease_lists_peers_and_writes_only_its_state_config_map():
    assert rights(own_namespace_rules()) == {
        ("coordination.k8s.io", "leases"): (["get", "create", "update"], None),
        ("discovery.k8s.io", "endpointslices"): (["list"], None),
        # No create: it cannot be limited to a name, so the deployer creates this one ConfigMap.
        ("", "configmaps"): (["get", "patch", "update"], [STATE_CONFIGMAP]),
    }


def test_the_state_config_map_is_declared_empty_in_the_router_namespace():
    config_map = state_config_map()
    assert config_map["metadata"] == object_metadata(STATE_CONFIGMAP)
    assert list(config_map["data"]) == [STATE_KEY] and parse_state(config_map["data"][STATE_KEY], "test") == RouterState()


def test_role_metadata_names_the_model_namespace():
    assert object_metadata(ROUTER_APP, "models-gpu") == {"name": ROUTER_APP, "namespace": "models-gpu", "labels": router_labels()}
    assert object_metadata(TLS_SECRET)["namespace"] == "aks-inference"


# --------------------------------------------------------------------------- NetworkPolicies


def policies(tls: bool = False) -> dict[str, dict]:
    """The router namespace's policy specs, by metadata name."""
    built = network_policies(RouterEnvironment(model_namespaces=tuple(MODEL_NAMESPACES)), tls)
    return {policy["metadata"]["name"]: policy["spec"] for policy in built.values()}


def test_every_pod_of_the_router_namespace_is_denied_both_ways_by_default():
    deny = policies()["aks-inference-router-default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}  # no rule: nothing admitted
    assert {policy["metadata"]["namespace"] for policy in network_policies(RouterEnvironment(), False).values()} == {"aks-inference"}


@pytest.mark.parametrize(("tls", "scoring"), [(False, 8080), (True, 8443)], ids=["plain", "tls"])
def test_router_pods_admit_scoring_from_anywhere_and_status_only_from_router_pods(tls, scoring):
    admitted = [
        (rule.get("from"), port["port"])
        for spec in policies(tls).values() if "Ingress" in spec["policyTypes"]
        for rule in spec.get("ingress", [])
        for port in rule["ports"]
    ]
    # None: every source. The peer port takes requests forwarded to a service's slot owners (router/ownership.py).
    assert admitted == [(None, scoring), ([ROUTER_PODS_PEER], RouterEnvironment().metrics_port), ([ROUTER_PODS_PEER], RouterEnvironment().peer_port)]
    assert all(spec["podSelector"] in ({}, ROUTER_PODS) for spec in policies(tls).values())


def test_no_policy_admits_envoys_admin_port():
    admin = RouterEnvironment().admin_port
    ports = {port["port"] for spec in policies().values() for rule in spec.get("ingress", []) + spec.get("egress", []) for port in rule["ports"]}
    assert admin not in ports and 9090 in ports


def test_router_pods_reach_dns_https_outside_imds_the_models_and_their_peers_only():
    egress = policies()["aks-inference-router-restricted-egress"]
    assert egress["podSelector"] == ROUTER_PODS and egress["policyTypes"] == ["Egress"]
    assert egress["egress"] == [
        {
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [IMDS]}}], "ports": [{"protocol": "TCP", "port": 443}]},
        {
            "to": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}, "podSelector": {"matchLabels": {MODEL_SERVICE_LABEL: "true"}}}
                for namespace in MODEL_NAMESPACES
            ],
            "ports": [{"protocol": "TCP", "port": MODEL_PORT}],
        },
        {"to": [ROUTER_PODS_PEER], "ports": [{"protocol": "TCP", "port": 9090}, {"protocol": "TCP", "port": 8081}]},
    ]


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
    deployment, hpa, pdb, _ = manifests(config)[:4]
    assert router_replicas(config) == replicas == deployment["spec"]["replicas"]
    # Each router enforces 1/replicas of every service's limits: told the same number the Deployment starts with.
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        assert {"name": "AKSINF_ROUTER_REPLICAS", "value": str(replicas)} in container["env"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (replicas, 3 * replicas)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": ROUTER_APP}
    assert pdb["spec"]["minAvailable"] == min_available


def test_every_selector_picks_the_router_pods(tls_pair):
    deployment, _, pdb, service = manifests(fast_prod(tls=tls_pair))[:4]
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


def test_only_the_control_plane_gets_the_api_token_where_the_kubernetes_client_reads_it():
    pod = pod_spec(router_environment(dev_test(), MODEL_NAMESPACES), False, IMAGE)
    assert pod["automountServiceAccountToken"] is False
    [volume] = [volume for volume in pod["volumes"] if "projected" in volume]
    mounts = {c["name"]: [m for m in c["volumeMounts"] if m["name"] == volume["name"]] for c in pod["containers"]}
    assert mounts["envoy"] == []
    [mount] = mounts["control-plane"]
    assert mount == {"name": volume["name"], "mountPath": SERVICE_ACCOUNT_DIR, "readOnly": True}
    token, ca, namespace = volume["projected"]["sources"]
    # The files load_incluster_config() reads, where it reads them; the kubelet rotates the token, the client rereads it.
    assert str(Path(SERVICE_ACCOUNT_DIR) / token["serviceAccountToken"]["path"]) == SERVICE_TOKEN_FILENAME
    assert token["serviceAccountToken"]["expirationSeconds"] == 3600
    assert ca["configMap"] == {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    assert str(Path(SERVICE_ACCOUNT_DIR) / "ca.crt") == SERVICE_CERT_FILENAME
    assert namespace["downwardAPI"] == {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}


@pytest.mark.parametrize(("tls", "scoring"), [(False, 8080), (True, 8443)], ids=["plain", "tls"])
def test_every_container_is_probed_by_the_kubelet_without_the_admin_port(tls, scoring):
    by_name = {c["name"]: c for c in pod_spec(RouterEnvironment(), tls, IMAGE)["containers"]}
    control_plane, envoy = by_name["control-plane"], by_name["envoy"]
    assert control_plane["ports"] == [{"name": "status", "containerPort": 9090}]
    assert control_plane["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "status"}
    assert control_plane["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "status"}
    assert envoy["ports"] == [{"name": "scoring", "containerPort": scoring}]  # the admin port is loopback-only: not exposed
    assert envoy["readinessProbe"]["tcpSocket"] == envoy["livenessProbe"]["tcpSocket"] == {"port": "scoring"}
    for container in by_name.values():
        assert container["livenessProbe"]["initialDelaySeconds"] == 10


def test_without_auth_no_token_settings_reach_the_pod():
    environment = router_environment(dev_test(), MODEL_NAMESPACES)
    assert environment.jwt_issuer is environment.jwt_audience is environment.jwks_uri is None
    assert environment.as_env() == RouterEnvironment(
        model_namespaces=("models", "models-gpu"), listen_port=8080, envoy_heap_bytes=ENVOY_HEAP_BYTES, envoy_concurrency=ENVOY_CPU_LIMIT
    ).as_env()


def test_envoy_runs_one_worker_per_core_of_its_cpu_limit():
    """Envoy's default (a worker per hardware thread of the node) would oversubscribe its CPU quota."""
    envoy = containers(fast_prod())["envoy"]
    env = {e["name"]: e["value"] for e in envoy["env"]}
    assert env["AKSINF_ENVOY_CONCURRENCY"] == envoy["resources"]["limits"]["cpu"] == str(ENVOY_CPU_LIMIT)
    assert RouterEnvironment.from_environ(env).envoy_concurrency == ENVOY_CPU_LIMIT


def test_envoy_refuses_new_requests_before_its_container_memory_limit():
    """Bodies are buffered whole (up to the 100 MB cap each): Envoy is told a heap budget below its limit."""
    envoy = containers(dev_test())["envoy"]
    env = {e["name"]: e["value"] for e in envoy["env"]}
    limit = int(envoy["resources"]["limits"]["memory"].removesuffix("Mi")) * 2**20
    assert limit == ENVOY_MEMORY_LIMIT_BYTES and 0 < int(env["AKSINF_ENVOY_HEAP_BYTES"]) < limit


def test_tls_serves_8443_behind_443_and_mounts_the_secret(tls_pair):
    config = fast_prod(tls=tls_pair)
    environment = router_environment(config, MODEL_NAMESPACES)
    assert environment.listen_port == 8443
    envoy = containers(config)["envoy"]
    assert {port["name"]: port["containerPort"] for port in envoy["ports"]} == {"scoring": 8443}
    assert {"name": "tls", "mountPath": environment.tls_dir, "readOnly": True} in envoy["volumeMounts"]
    pod = manifests(config)[0]["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": TLS_SECRET}} in pod["volumes"]
    assert service_spec(True)["ports"] == [{"name": "https", "port": 443, "targetPort": "scoring"}]


def test_plain_http_serves_8080_behind_80_without_a_tls_volume():
    config = fast_prod(tls={"allowInsecure": True})
    envoy = containers(config)["envoy"]
    assert {port["name"]: port["containerPort"] for port in envoy["ports"]}["scoring"] == 8080
    pod = manifests(config)[0]["spec"]["template"]["spec"]
    assert [volume["name"] for volume in pod["volumes"]] == ["envoy-config", "kube-api-access"]
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
    policy = next(manifest for manifest in manifests(dev_test()) if manifest["kind"] == "NetworkPolicy")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**policy, "spec": {**policy["spec"], "policyType": ["Ingress"]}}, KUBERNETES_VERSION, strict=True)


def test_same_inputs_give_equal_independent_dicts(tls_pair):
    config = fast_prod(tls=tls_pair)
    first, second = manifests(config), manifests(config)
    assert first == second
    first[0]["spec"]["template"]["metadata"]["labels"]["changed"] = "yes"
    first[3]["spec"]["selector"]["changed"] = "yes"
    assert manifests(config) == second and "changed" not in router_labels()
