"""docs/kubernetes.md describes exactly the NetworkPolicies the program creates: the same names, and every
port a policy opens is named in its row (issue #13: the docs once promised a router policy that did not exist)."""

import re

from contract.stack import PROJECT_ROOT
from tests.pulumi_harness import run_program, with_config

DOC = PROJECT_ROOT / "docs" / "kubernetes.md"
SERVICE = "diabetes"
STORAGE_SERVICE = {"name": SERVICE, "path": "examples/models/diabetes", "deployment": {"appInsightsEnabled": True}}


def documented_rows() -> dict[str, str]:
    """First-column names of the two NetworkPolicy tables (`model-<name>-…` and `aks-inference-router-…`)."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\|\s*(?:NetworkPolicy\s+)?`((?:model-<name>|aks-inference-router)-[a-z-]+)`\s*\|(.*)", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def created_policies(models) -> dict[str, dict]:
    run = run_program("prod", with_config("prod", models=models, tls={"allowInsecure": True}))
    assert run.error is None, run.error
    return {
        r.inputs["metadata"]["name"].replace(f"model-{SERVICE}-", "model-<name>-"): r.inputs["spec"]
        for r in run.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    }


def ports(spec: dict) -> set[int]:
    rules = spec.get("ingress", []) + spec.get("egress", [])
    return {p["port"] for rule in rules for p in rule.get("ports", []) if isinstance(p.get("port"), int)}


def test_the_documented_network_policies_are_the_created_ones():
    created = created_policies([STORAGE_SERVICE])
    documented = documented_rows()
    assert set(documented) == set(created)
    for name, spec in created.items():
        missing = {port for port in ports(spec) if str(port) not in documented[name]}
        assert not missing, f"{name} opens {sorted(missing)}, which docs/kubernetes.md does not name"
