"""Versioned endpoints (`versions` and `rollout` of an `aks-inference:models` entry), validated as v1's
AksEndpoint was, through the one loader: keyed issues, all at once, never a traceback."""

from __future__ import annotations

import re

import pytest
import yaml

from contract.errors import ConfigError
from contract.loading import load_stack
from contract.stack import PROJECT_ROOT
from tests.fixtures_services import service  # noqa: F401  (fixture)

ADMIN_GROUP = "00000000-0000-0000-0000-000000000001"
BASE = {"purpose": "DevTest", "cluster": {"adminGroupObjectIds": [ADMIN_GROUP]}}
SAMPLE = "examples/models/diabetes"


def endpoint(*versions: dict, **extra) -> dict:
    return {"name": "diabetes", "path": SAMPLE, "versions": list(versions), **extra}


V1 = {"name": "diabetes-v1", "isDefault": True, "versionType": "control"}
V2 = {"name": "diabetes-v2", "trafficPercentile": 10}


def load(*models: dict, deployment: tuple[str, str] | None = None):
    return load_stack({**BASE, "models": list(models)}, "westeurope", deployment=deployment)


def issues(*models: dict) -> dict[str, tuple[object, str]]:
    """key -> (value, problem); problems of one key joined with ' | '."""
    with pytest.raises(ConfigError) as excinfo:
        load(*models)
    found: dict[str, tuple[object, str]] = {}
    for issue in excinfo.value.issues:
        value, problem = found.get(issue.key, (issue.value, ""))
        found[issue.key] = (value, f"{problem} | {issue.problem}" if problem else issue.problem)
    return found


def test_an_endpoint_loads_each_version_as_its_own_service_with_merged_overrides():
    stack = load(endpoint(V1, {**V2, "deployment": {"scoringTimeoutMs": 9000}}, deployment={"scoringTimeoutMs": 5000}))
    v1, v2 = stack.versions["diabetes"]
    assert (v1.name, v2.name) == ("diabetes-v1", "diabetes-v2")
    assert v1.deployment.scoring_timeout_ms == 5000 and v2.deployment.scoring_timeout_ms == 9000
    assert v1.folder == v2.folder == stack.services[0].folder
    entry = stack.config.models[0]
    assert entry.versions[1].traffic_percentile == 10 and entry.versions[0].version_type == "control"


def test_a_plain_service_has_no_versions():
    stack = load({"name": "diabetes", "path": SAMPLE})
    assert stack.versions == {} and stack.config.models[0].versions == []


def test_a_version_can_use_another_folder(service):  # noqa: F811
    stack = load(endpoint(V1, {**V2, "path": str(service)}))
    assert stack.versions["diabetes"][1].folder == service.resolve()


BAD_INPUTS = [
    # (case, models entry, {key: words the problem must contain})
    ("seven versions", endpoint(V1, *({"name": f"diabetes-v{n}"} for n in range(2, 8))), {"models[0].versions": "at most 6"}),
    ("no default", endpoint({**V1, "isDefault": False}, V2), {"models[0].versions": "exactly one version with isDefault"}),
    ("two defaults", endpoint(V1, {**V2, "isDefault": True}), {"models[0].versions[1].isDefault": "already the default"}),
    ("percentages over 100", endpoint(V1, {**V2, "trafficPercentile": 60}, {"name": "diabetes-v3", "trafficPercentile": 50}),
     {"models[0].versions": "sum to 110"}),
    ("negative percentage", endpoint(V1, {**V2, "trafficPercentile": -1}), {"models[0].versions[1].trafficPercentile": "greater than or equal to 0"}),
    ("percentage above 100", endpoint(V1, {**V2, "trafficPercentile": 101}), {"models[0].versions[1].trafficPercentile": "less than or equal to 100"}),
    ("fractional percentage", endpoint(V1, {**V2, "trafficPercentile": 12.5}), {"models[0].versions[1].trafficPercentile": "integer"}),
    ("default with a wrong share", endpoint({**V1, "trafficPercentile": 50}, V2), {"models[0].versions[0].trafficPercentile": "takes the rest (90)"}),
    ("duplicate names", endpoint(V1, {**V2, "name": "diabetes-v1"}), {"models[0].versions[1].name": "models[0].versions[0] already uses it"}),
    ("version named as the endpoint", endpoint(V1, {**V2, "name": "diabetes"}), {"models[0].versions[1].name": "differ from the endpoint's name"}),
    ("version name not a service name", endpoint(V1, {**V2, "name": "Diabetes_V2"}), {"models[0].versions[1].name": "3-32 characters"}),
    ("two controls", endpoint(V1, {**V2, "versionType": "control"}), {"models[0].versions[1].versionType": "at most one control"}),
    ("unknown version type", endpoint(V1, {**V2, "versionType": "canary"}), {"models[0].versions[1].versionType": "'control' or 'treatment'"}),
    ("a shadow with traffic", endpoint(V1, {**V2, "mirrorPercentile": 20}), {"models[0].versions[1].mirrorPercentile": "never answers a client"}),
    ("a version changing auth", endpoint(V1, {**V2, "deployment": {"authEnabled": False}}),
     {"models[0].versions[1].deployment.authEnabled": "belongs to the endpoint"}),
    ("unknown version key", endpoint(V1, {**V2, "traffic": 10}), {"models[0].versions[1].traffic": "did you mean 'trafficPercentile'"}),
    ("a bad override in a version", endpoint(V1, {**V2, "deployment": {"scoringTimeoutMs": "slow"}}),
     {"models[0].versions[1].deployment.scoringTimeoutMs": "integer"}),
    ("a version folder that is missing", endpoint(V1, {**V2, "path": "no/such/folder"}), {"models[0].versions[1].path": "not a directory"}),
    ("rollout without versions", {"name": "diabetes", "path": SAMPLE, "rollout": {"steps": [10, 100]}}, {"models[0].rollout": "needs versions"}),
]


def test_every_problem_is_reported_at_once():
    found = issues(endpoint({**V1, "isDefault": False}, {**V2, "name": "diabetes"}, {**V2, "name": "diabetes-v3", "versionType": "control", "mirrorPercentile": 5},
                            {"name": "diabetes-v1", "versionType": "control"}))
    assert {"models[0].versions", "models[0].versions[1].name", "models[0].versions[2].mirrorPercentile",
            "models[0].versions[3].name", "models[0].versions[2].versionType"} <= set(found)


def test_version_names_are_unique_across_the_stack():
    found = issues(endpoint(V1, V2), {"name": "diabetes-v2", "path": SAMPLE},
                   {**endpoint({**V1, "name": "other-v1"}), "name": "other"})
    assert "models[1] already uses it" in found["models[0].versions[1].name"][1]
    found = issues(endpoint(V1, V2), {**endpoint({**V1}), "name": "other"})
    assert "models[0].versions[0] already uses it" in found["models[1].versions[0].name"][1]


def test_version_names_meet_the_azure_name_rules_of_the_stack():
    """Each collecting version gets its own model-data identity: its name joins the derived Azure names."""
    long_version = {**V2, "name": "diabetes-" + "v" * 23}
    with pytest.raises(ConfigError) as excinfo:
        load(endpoint(V1, long_version), deployment=("aks-inference", "a" * 90))
    identities = [issue.problem for issue in excinfo.value.issues if "managed identity" in issue.problem]
    assert len(identities) == 1 and f"id-modeldata-{long_version['name']}-aksinf" in identities[0]


def test_the_keys_of_a_version_never_show():
    found = issues(endpoint(V1, {**V2, "deployment": {"keys": {"primaryKey": "s3cret-s3cret-s3cret"}}}))
    value, problem = found["models[0].versions[1].deployment.keys"]
    assert value == "[secret]" and "belongs to the endpoint" in problem


# --------------------------------------------------------------------------- rollout


CANARY = {**V2, "trafficPercentile": 10}


def test_a_rollout_policy_validates_with_its_defaults():
    stack = load(endpoint(V1, CANARY, rollout={"steps": [10, 50, 100]}))
    rollout = stack.config.models[0].rollout
    assert rollout.steps == [10, 50, 100] and rollout.analysis_window_seconds == 300 and rollout.min_requests == 100


BAD_ROLLOUTS = [
    ("steps not increasing", endpoint(V1, CANARY, rollout={"steps": [10, 10, 100]}), {"models[0].rollout.steps": "strictly increasing"}),
    ("no steps", endpoint(V1, CANARY, rollout={"steps": []}), {"models[0].rollout.steps": "at least one"}),
    ("a step above 100", endpoint(V1, CANARY, rollout={"steps": [10, 101]}), {"models[0].rollout.steps[1]": "less than or equal to 100"}),
    ("a zero window", endpoint(V1, CANARY, rollout={"steps": [10], "analysisWindowSeconds": 0}), {"models[0].rollout.analysisWindowSeconds": "greater than or equal to 10"}),
    ("an error rate above 1", endpoint(V1, CANARY, rollout={"steps": [10], "maxServerErrorRate": 5}), {"models[0].rollout.maxServerErrorRate": "less than or equal to 1"}),
    ("a latency ratio below 1", endpoint(V1, CANARY, rollout={"steps": [10], "maxP99LatencyRatio": 0.5}), {"models[0].rollout.maxP99LatencyRatio": "greater than or equal to 1"}),
    ("no control", endpoint({**V1, "versionType": "treatment"}, CANARY, rollout={"steps": [10, 100]}), {"models[0].rollout": "control version that is the default"}),
    ("two canaries", endpoint(V1, CANARY, {"name": "diabetes-v3", "trafficPercentile": 5}, rollout={"steps": [10, 50]}),
     {"models[0].rollout": "exactly one treatment"}),
    ("start differs from the configured share", endpoint(V1, {**CANARY, "trafficPercentile": 20}, rollout={"steps": [10, 100]}),
     {"models[0].versions[1].trafficPercentile": "allowed: 10"}),
    ("a shadow cannot be the canary", endpoint(V1, {**CANARY, "trafficPercentile": 0, "mirrorPercentile": 10}, rollout={"steps": [10, 100]}),
     {"models[0].rollout": "exactly one treatment"}),
]


@pytest.mark.parametrize("case, entry, expected", BAD_INPUTS + BAD_ROLLOUTS, ids=[case for case, _, _ in BAD_INPUTS + BAD_ROLLOUTS])
def test_bad_endpoint_configs_and_rollouts_are_keyed_issues(case, entry, expected):
    found = issues(entry)
    for key, words in expected.items():
        assert key in found, f"{case}: {key} not in {sorted(found)}"
        assert words in found[key][1], f"{case}: {found[key]}"


def test_the_documented_example_loads():
    section = (PROJECT_ROOT / "docs" / "models.md").read_text().split("## Versioned endpoints", 1)[1]
    example = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.DOTALL).group(1))["config"]["aks-inference:models"]
    stack = load(*example)
    assert [s.name for s in stack.versions["diabetes"]] == ["diabetes-v1", "diabetes-v2", "diabetes-v3"]
    assert stack.versions["diabetes"][1].deployment.max_replicas == 4
