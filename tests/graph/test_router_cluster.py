"""The router on the cluster, offline: RBAC, NetworkPolicies, the API token, probes, TLS rule, HPA only on the router,
LoadBalancer, outputs."""

import pytest

from tests.certs import self_signed
from tests.pulumi_harness import run_program, with_config

DIABETES = {"name": "diabetes", "path": "examples/models/diabetes"}


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory):
    cert, key, _ = self_signed(tmp_path_factory.mktemp("tls"), "scoring.example.com")
    return {"certificate": cert.read_text(), "key": key.read_text()}


def prod_with(tls, **router):
    return with_config("prod", models=[DIABETES], tls=tls, router=router or None)


def test_production_models_need_tls():
    run = run_program("prod", with_config("prod", models=[DIABETES]))
    assert "tls.certificate: is required for FastProd" in str(run.error) and run.resources == []
    insecure = run_program("prod", with_config("prod", models=[DIABETES], tls={"allowInsecure": True}))
    assert insecure.error is None and insecure.outputs["scoringBaseUrl"].startswith("http://")


def test_tls_problems_never_echo_the_secret(tls_pair):
    other = self_signed(__import__("pathlib").Path(__import__("tempfile").mkdtemp()), "other")[1].read_text()
    run = run_program("prod", with_config("prod", models=[DIABETES], tls={**tls_pair, "key": other}), secret_keys=("aks-inference:tls",))
    message = str(run.error)
    assert "tls.key: does not belong to the first certificate" in message
    assert "BEGIN" not in message and run.resources == []


def test_tls_key_must_be_a_pulumi_secret(tls_pair):
    run = run_program("prod", with_config("prod", models=[DIABETES], tls=tls_pair))
    message = str(run.error)
    assert "tls.key" in message and "pulumi config set --secret" in message
    assert "BEGIN" not in message and run.resources == []


def test_router_objects(tls_pair):
    run = run_program("prod", prod_with({**tls_pair, "cname": "scoring.example.com"}, loadBalancer="internal", dnsLabel="contoso-scoring"), secret_keys=("aks-inference:tls",))
    assert run.error is None, run.error
    deployments = {r.inputs["metadata"]["name"]: r for r in run.of_type("kubernetes:apps/v1:Deployment")}
    router = deployments["aks-inference-router"]
    assert router.inputs["spec"]["replicas"] == 3 and router.ignore_changes == ["spec.replicas"]
    anti = router.inputs["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    # The only HPA targets the router itself; model Deployments are scaled by the router.
    hpas = run.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
    assert [h.inputs["spec"]["scaleTargetRef"]["name"] for h in hpas] == ["aks-inference-router"]
    # Least privilege: namespaced Roles only, the only writes are deployments/scale, its own Lease and its state ConfigMap.
    assert not [r for r in run.resources if "ClusterRole" in r.type]
    roles = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]): r.inputs["rules"] for r in run.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")}
    writes = {(rule["resources"][0], verb) for rules in roles.values() for rule in rules for verb in rule["verbs"] if verb in ("create", "update", "patch", "delete")}
    assert writes == {
        ("deployments/scale", "patch"), ("deployments/scale", "update"), ("leases", "create"), ("leases", "update"),
        ("configmaps", "patch"), ("configmaps", "update"),
    }
    # The state ConfigMap is declared once, empty; `pulumi up` never resets what the router wrote in it.
    state = run.one("kubernetes:core/v1:ConfigMap", "aks-inference-router-state")
    assert state.inputs["metadata"]["namespace"] == "aks-inference" and state.ignore_changes == ["data"]
    assert state.inputs["data"] == {"state.json": '{"autoscaler":{},"traffic":{}}'}
    service = next(r for r in run.of_type("kubernetes:core/v1:Service") if r.inputs["metadata"]["name"] == "aks-inference-router")
    annotations = service.inputs["metadata"]["annotations"]
    assert annotations == {"service.beta.kubernetes.io/azure-load-balancer-internal": "true", "service.beta.kubernetes.io/azure-dns-label-name": "contoso-scoring"}
    assert service.inputs["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "scoring"}]
    secret = next(r for r in run.of_type("kubernetes:core/v1:Secret") if r.inputs["type"] == "kubernetes.io/tls")
    assert {p.split(".")[0] for p in secret.secret_paths} == {"stringData"}
    assert run.outputs["scoringBaseUrl"] == "https://scoring.example.com"
    assert run.outputs["services"]["diabetes"] == {
        "scoringUri": "https://scoring.example.com/api/v1/service/diabetes/score",
        "swaggerUri": "https://scoring.example.com/api/v1/service/diabetes/swagger.json",
    }
    image = next(r for r in run.of_type("docker:index/image:Image") if r.name.endswith("router-image"))
    assert image.inputs["imageName"].startswith(run.outputs["registryLoginServer"] + "/aksinf/router:")  # our ACR only
    containers = router.inputs["spec"]["template"]["spec"]["containers"]
    assert {c["image"] for c in containers} == {image.outputs["repoDigest"]}


def test_dns_label_gives_the_cloudapp_endpoint():
    run = run_program("dev", with_config("dev", router={"dnsLabel": "contoso-dev"}))
    assert run.outputs["scoringBaseUrl"] == "http://contoso-dev.westeurope.cloudapp.azure.com"
    assert run.one("kubernetes:apps/v1:Deployment", "aks-inference-router-deployment").inputs["spec"]["replicas"] == 1


# --------------------------------------------------------------------------- least privilege

NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
ROUTER_PODS = {"matchLabels": {"app.kubernetes.io/name": "aks-inference-router"}}
ROUTER_PODS_PEER = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "aks-inference"}}, "podSelector": ROUTER_PODS}
OPEN_MODEL = {"name": "open", "path": "examples/models/diabetes", "deployment": {"namespace": "team-a", "authEnabled": False}}


def router_policies(run) -> dict[str, dict]:
    return {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in run.of_type(NETWORK_POLICY) if r.inputs["metadata"]["namespace"] == "aks-inference"}


def router_pod(run) -> dict:
    return run.one("kubernetes:apps/v1:Deployment", "aks-inference-router-deployment").inputs["spec"]["template"]["spec"]


def test_the_router_namespace_denies_by_default_and_admits_scoring_from_anywhere_and_status_from_router_pods(dev_run):
    policies = router_policies(dev_run)
    assert policies["aks-inference-router-default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    admitted = sorted(
        ((port["port"], rule.get("from")) for spec in policies.values() for rule in spec.get("ingress", []) for port in rule["ports"]),
        key=lambda admission: admission[0],
    )
    # None: from anywhere; never 9901 (admin); 8081 (the peer listener, router/ownership.py) from router pods only
    assert admitted == [(8080, None), (8081, [ROUTER_PODS_PEER]), (9090, [ROUTER_PODS_PEER])]
    assert all(spec["podSelector"] == ROUTER_PODS for name, spec in policies.items() if name != "aks-inference-router-default-deny")


def test_router_pods_reach_dns_https_outside_imds_the_model_pods_and_their_peers_only(dev_run):
    egress = router_policies(dev_run)["aks-inference-router-restricted-egress"]["egress"]
    reached = {(port["protocol"], port["port"]): rule["to"] for rule in egress for port in rule["ports"]}
    assert set(reached) == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 5001), ("TCP", 8081), ("TCP", 9090)}
    assert reached[("UDP", 53)] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    assert reached[("TCP", 443)] == [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}]
    assert reached[("TCP", 5001)] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "models"}}, "podSelector": {"matchLabels": {"aks-inference/model-service": "true"}}}]
    assert reached[("TCP", 9090)] == reached[("TCP", 8081)] == [ROUTER_PODS_PEER]


def test_router_roles_name_the_keys_secrets_and_the_model_deployments():
    run = run_program("dev", with_config("dev", models=[DIABETES, OPEN_MODEL]))
    assert run.error is None, run.error
    roles = {r.inputs["metadata"]["namespace"]: r.inputs["rules"] for r in run.of_type(ROLE)}
    rights = {
        namespace: {(rule["apiGroups"][0], resource): (rule["verbs"], rule.get("resourceNames")) for rule in rules for resource in rule["resources"]}
        for namespace, rules in roles.items()
    }
    read = ["get", "list", "watch"]
    assert rights["models"] == {
        ("", "services"): (read, None),
        ("discovery.k8s.io", "endpointslices"): (read, None),
        ("", "secrets"): (["get"], ["model-diabetes-keys"]),
        ("apps", "deployments"): (["get"], ["model-diabetes"]),
        ("apps", "deployments/scale"): (["get", "patch", "update"], ["model-diabetes"]),
    }
    assert ("", "secrets") not in rights["team-a"]  # no key-auth service there: no Secret to read
    assert rights["team-a"][("apps", "deployments/scale")] == (["get", "patch", "update"], ["model-open"])
    # The router is told about, and may reach, the model pods of both namespaces.
    control_plane = next(c for c in router_pod(run)["containers"] if c["name"] == "control-plane")
    assert {e["name"]: e["value"] for e in control_plane["env"]}["AKSINF_MODEL_NAMESPACES"] == "models,team-a"
    [to_models] = [rule for rule in router_policies(run)["aks-inference-router-restricted-egress"]["egress"] if rule["ports"] == [{"protocol": "TCP", "port": 5001}]]
    assert [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in to_models["to"]] == ["models", "team-a"]


def test_only_the_control_plane_holds_the_router_token(dev_run):
    account = dev_run.one("kubernetes:core/v1:ServiceAccount", "aks-inference-router-sa")
    assert account.inputs["automountServiceAccountToken"] is False
    pod = router_pod(dev_run)
    assert pod["automountServiceAccountToken"] is False
    token_mounts = {c["name"]: [m["mountPath"] for m in c["volumeMounts"] if m["name"] == "kube-api-access"] for c in pod["containers"]}
    assert token_mounts == {"control-plane": ["/var/run/secrets/kubernetes.io/serviceaccount"], "envoy": []}
    [volume] = [v for v in pod["volumes"] if v["name"] == "kube-api-access"]
    assert [next(iter(source)) for source in volume["projected"]["sources"]] == ["serviceAccountToken", "configMap", "downwardAPI"]


def test_every_router_container_is_probed_and_the_admin_port_is_not_exposed(dev_run):
    containers = {c["name"]: c for c in router_pod(dev_run)["containers"]}
    for container in containers.values():
        assert container["readinessProbe"] and container["livenessProbe"]
        assert "admin" not in {port["name"] for port in container["ports"]} and 9901 not in {port["containerPort"] for port in container["ports"]}
    assert containers["control-plane"]["ports"] == [{"name": "status", "containerPort": 9090}]
    assert containers["control-plane"]["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "status"}
    assert containers["control-plane"]["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "status"}
    assert containers["envoy"]["readinessProbe"]["tcpSocket"] == containers["envoy"]["livenessProbe"]["tcpSocket"] == {"port": "scoring"}
