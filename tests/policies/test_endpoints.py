"""The versioned-endpoint rules on what the real program creates for an endpoint (tests/policies/conftest.py's
dev+endpoint stack), through the real analyzer: the messages name the endpoint and its versions, and the
program's own objects pass every mandatory rule."""

from __future__ import annotations

import json

from review.analyzer import analyze
from tests.policies.helpers import edit, setter
from tests.policies.test_rules import ENDPOINT, SERVICE, VERSIONS, fast_prod, versions


def mandatory(resources, rule: str) -> list[str]:
    return [d.message.splitlines()[-1] for d in analyze(resources)["mandatory"] if d.policy == rule]


def test_the_program_s_endpoint_passes_every_mandatory_rule(stacks):
    assert analyze(stacks["dev+endpoint"])["mandatory"] == []
    assert analyze(edit(SERVICE, fast_prod)(stacks["dev+endpoint"]))["mandatory"] == []  # it has a control


def test_a_treatment_at_100_is_refused_whatever_the_default_is(stacks):
    all_treatment = edit(SERVICE, setter(VERSIONS, versions(("diabetes-v1", None, "treatment"), ("diabetes-v2", 100, "treatment"))), name=ENDPOINT)
    [message] = mandatory(all_treatment(stacks["dev+endpoint"]), "endpoint-treatment-not-all-traffic")
    assert "diabetes-v2 take 100 %" in message and "the default diabetes-v1 answers none" in message
    # Two treatments sharing everything, and no default at all: refused, and said so.
    no_default = edit(SERVICE, setter(VERSIONS, json.dumps([
        {"name": "diabetes-v1", "trafficPercentile": 60, "isDefault": False, "versionType": "treatment"},
        {"name": "diabetes-v2", "trafficPercentile": 40, "isDefault": False, "versionType": "treatment"}])), name=ENDPOINT)
    [message] = mandatory(no_default(stacks["dev+endpoint"]), "endpoint-treatment-not-all-traffic")
    assert "diabetes-v1, diabetes-v2 take 100 %" in message and "no default version" in message
    # A control that is not the default but answers all: no treatment takes everything.
    control_all = edit(SERVICE, setter(VERSIONS, versions(("diabetes-v2", None, "treatment"), ("diabetes-v1", 100, "control"))), name=ENDPOINT)
    assert mandatory(control_all(stacks["dev+endpoint"]), "endpoint-treatment-not-all-traffic") == []


def test_an_unreadable_versions_annotation_is_no_control(stacks):
    broken = edit(SERVICE, setter(VERSIONS, "{not json"), name=ENDPOINT)
    prod = edit(SERVICE, fast_prod, name=ENDPOINT)
    [message] = mandatory(broken(prod(stacks["dev+endpoint"])), "endpoint-control-version-production")
    assert "no readable aks-inference/versions annotation" in message


def test_versions_whose_endpoint_is_missing_or_does_not_list_them(stacks):
    without_endpoint = [r for r in stacks["dev+endpoint"] if not (r.type == SERVICE and r.inputs["metadata"]["name"] == ENDPOINT)]
    found = analyze(without_endpoint)["mandatory"]
    hits = sorted((d.urn.rsplit("::", 1)[-1], d.message.splitlines()[-1]) for d in found if d.policy == "endpoint-versions-have-endpoints")
    assert [urn for urn, _ in hits] == ["aks-inference-models-diabetes-v1-service", "aks-inference-models-diabetes-v2-service"]
    assert "names endpoint diabetes, which has no endpoint Service in namespace models" in hits[0][1]
    unlisted = edit(SERVICE, setter(VERSIONS, versions(("diabetes-v1", None, "control"))), name=ENDPOINT)
    [message] = mandatory(unlisted(stacks["dev+endpoint"]), "endpoint-versions-have-endpoints")
    assert "version diabetes-v2 names endpoint diabetes, whose aks-inference/versions annotation does not list it" in message
