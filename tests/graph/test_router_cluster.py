"""The router on the cluster, offline: RBAC, TLS rule, HPA only on the router, LoadBalancer, outputs."""

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
    # Least privilege: namespaced Roles only, the only write is deployments/scale (+ its own Lease).
    assert not [r for r in run.resources if "ClusterRole" in r.type]
    roles = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]): r.inputs["rules"] for r in run.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")}
    writes = {(rule["resources"][0], verb) for rules in roles.values() for rule in rules for verb in rule["verbs"] if verb in ("create", "update", "patch", "delete")}
    assert writes == {("deployments/scale", "patch"), ("deployments/scale", "update"), ("leases", "create"), ("leases", "update")}
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
