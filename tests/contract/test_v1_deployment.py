"""deploymentconfig.json: every v1 field, its default, and every documented validation error."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from contract.errors import REDACTED
from contract.v1_files import DeploymentConfig, parse_deployment

SECRET = "s3cr3t-primary-key-0123456789"
OTHER_SECRET = "s3cr3t-secondary-key-987654321"


def parse(**fields):
    return parse_deployment({"computeType": "AKS", **fields}, key="")


def problems(document: dict) -> dict[str, str]:
    config, issues = parse_deployment(document, key="")
    assert config is None
    return {issue.key: issue.problem for issue in issues}


# v1 JSON key path -> documented default ([aks] docstrings; conflicts resolved as in docs/models.md)
DEFAULTS = [
    ("autoScaler.autoscaleEnabled", None),
    ("autoScaler.minReplicas", None),
    ("autoScaler.maxReplicas", None),
    ("autoScaler.refreshPeriodInSeconds", None),
    ("autoScaler.targetUtilization", None),
    ("containerResourceRequirements.cpu", 0.1),
    ("containerResourceRequirements.memoryInGB", 0.5),
    ("containerResourceRequirements.cpuLimit", None),
    ("containerResourceRequirements.memoryInGBLimit", None),
    ("containerResourceRequirements.gpu", None),
    ("gpuCores", None),
    ("livenessProbeRequirements.periodSeconds", 10),
    ("livenessProbeRequirements.initialDelaySeconds", 310),
    ("livenessProbeRequirements.timeoutSeconds", 2),
    ("livenessProbeRequirements.successThreshold", 1),
    ("livenessProbeRequirements.failureThreshold", 3),
    ("keys.primaryKey", None),
    ("keys.secondaryKey", None),
    ("authEnabled", None),
    ("tokenAuthEnabled", False),
    ("tokenAuthorization", None),  # aks-inference extension
    ("appInsightsEnabled", False),
    ("scoringTimeoutMs", 60000),
    ("maxConcurrentRequestsPerContainer", 1),
    ("maxQueueWaitMs", 500),
    ("expectedServiceTimeMs", None),  # aks-inference extension
    ("numReplicas", None),
    ("dataCollection.storageEnabled", False),
    ("namespace", None),
    ("computeTargetName", None),
    ("tags", {}),
    ("properties", {}),
    ("description", None),
]


def _by_alias(model, dotted: str):
    for part in dotted.split("."):
        field = next(name for name, info in type(model).model_fields.items() if (info.alias or name) == part)
        model = getattr(model, field)
    return model


@pytest.mark.parametrize("key, default", DEFAULTS, ids=[k for k, _ in DEFAULTS])
def test_field_default(key, default):
    config, issues = parse()
    assert issues == []
    assert _by_alias(config, key) == default


def test_every_field_is_in_the_default_table():
    def leaves(model_type, prefix=""):
        for name, info in model_type.model_fields.items():
            alias = info.alias or name
            inner = info.default_factory and info.default_factory()
            if isinstance(inner, BaseModel):
                yield from leaves(type(inner), f"{prefix}{alias}.")
            elif alias != "computeType":
                yield f"{prefix}{alias}"

    assert sorted(leaves(DeploymentConfig)) == sorted(k for k, _ in DEFAULTS)


def test_resolved_defaults_match_v1():
    config, _ = parse()
    assert config.autoscale_on is True  # on when numReplicas is unset
    assert (config.min_replicas, config.max_replicas, config.initial_replicas) == (1, 10, 1)
    assert config.refresh_seconds == 1
    assert config.target_utilization == pytest.approx(0.70)
    assert config.max_concurrent == 1
    assert config.max_queue_wait_ms == 500
    assert config.scoring_timeout_ms == 60000
    assert config.auth_mode == "key"
    assert config.gpu_count == 0


def test_full_v1_document_parses_and_round_trips():
    document = {
        "computeType": "AKS",
        "autoScaler": {"autoscaleEnabled": True, "minReplicas": 2, "maxReplicas": 8, "refreshPeriodInSeconds": 5, "targetUtilization": 60},
        "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1.5, "cpuLimit": 2, "memoryInGBLimit": 3},
        "gpuCores": 0,
        "livenessProbeRequirements": {"periodSeconds": 20, "initialDelaySeconds": 60, "timeoutSeconds": 4, "successThreshold": 1, "failureThreshold": 5},
        "keys": {"primaryKey": SECRET, "secondaryKey": OTHER_SECRET},
        "authEnabled": True,
        "tokenAuthEnabled": False,
        "appInsightsEnabled": True,
        "scoringTimeoutMs": 120000,
        "maxConcurrentRequestsPerContainer": 4,
        "maxQueueWaitMs": 2000,
        "dataCollection": {"storageEnabled": True},
        "namespace": "team-a",
        "computeTargetName": "aks-prod",
        "tags": {"team": "a"},
        "properties": {"owner": "ml"},
        "description": "demo",
    }
    config, issues = parse_deployment(document)
    assert issues == []
    assert (config.min_replicas, config.max_replicas, config.refresh_seconds) == (2, 8, 5)
    assert config.target_utilization == pytest.approx(0.6)
    assert config.max_concurrent == 4 and config.max_queue_wait_ms == 2000 and config.scoring_timeout_ms == 120000
    assert config.container_resource_requirements.memory_in_gb_limit == 3
    assert config.keys.primary_key == SECRET
    expected = dict(document)
    expected["containerResourceRequirements"] = {"cpu": 0.5, "memoryInGB": 1.5, "cpuLimit": 2.0, "memoryInGBLimit": 3.0}
    assert config.to_v1() == expected
    again, issues = parse_deployment(config.to_v1())
    assert issues == [] and again == config


def test_explicit_only_serialisation_keeps_what_the_file_said():
    config, _ = parse(scoringTimeoutMs=5000, autoScaler={"autoscaleEnabled": True, "maxReplicas": 4})
    assert config.to_v1(explicit_only=True) == {
        "computeType": "AKS",
        "autoScaler": {"autoscaleEnabled": True, "maxReplicas": 4},
        "scoringTimeoutMs": 5000,
    }


@pytest.mark.parametrize("compute_type", ["aks", "AKS", "Aks"])
def test_compute_type_is_case_insensitive(compute_type):
    config, issues = parse_deployment({"computeType": compute_type})
    assert issues == [] and config.compute_type == "AKS"


def test_compute_type_is_required_with_the_v1_message():
    found = problems({"numReplicas": 2})
    assert "Need to specify computeType" in found["computeType"]


def test_other_compute_types_are_refused():
    assert "must be AKS" in problems({"computeType": "ACI"})["computeType"]


def test_fixed_replicas_turn_autoscaling_off():
    config, issues = parse(numReplicas=3)
    assert issues == []
    assert config.autoscale_on is False
    assert (config.min_replicas, config.max_replicas, config.initial_replicas) == (3, 3, 3)


def test_autoscale_disabled_with_replicas():
    config, issues = parse(autoScaler={"autoscaleEnabled": False}, numReplicas=2)
    assert issues == [] and config.autoscale_on is False and config.initial_replicas == 2


@pytest.mark.parametrize(
    "fields, key, fragment",
    [
        # autoscale_enabled + num_replicas conflict, and disabled without replicas
        ({"autoScaler": {"autoscaleEnabled": True}, "numReplicas": 2}, "numReplicas", "autoscale enabled and num_replicas provided."),
        ({"autoScaler": {"autoscaleEnabled": False}}, "numReplicas", "autoscale disabled but num_replicas not provided."),
        # replica settings only with autoscaling explicitly on (None triggers it too)
        ({"autoScaler": {"minReplicas": 2}}, "autoScaler.minReplicas", "without enabling autoscaling"),
        ({"autoScaler": {"maxReplicas": 2}}, "autoScaler.maxReplicas", "without enabling autoscaling"),
        ({"autoScaler": {"refreshPeriodInSeconds": 2}}, "autoScaler.refreshPeriodInSeconds", "without enabling autoscaling"),
        ({"autoScaler": {"targetUtilization": 50}}, "autoScaler.targetUtilization", "without enabling autoscaling"),
        ({"autoScaler": {"autoscaleEnabled": False, "minReplicas": 2}, "numReplicas": 1}, "autoScaler.minReplicas", "without enabling autoscaling"),
        # min <= max, against the given or the default maximum
        ({"autoScaler": {"autoscaleEnabled": True, "minReplicas": 5, "maxReplicas": 3}}, "autoScaler.minReplicas", "<= autoScaler.maxReplicas (3)"),
        ({"autoScaler": {"autoscaleEnabled": True, "minReplicas": 12}}, "autoScaler.minReplicas", "(10, the default)"),
        # key and token auth are mutually exclusive
        ({"authEnabled": True, "tokenAuthEnabled": True}, "tokenAuthEnabled", "auth_enabled and token_auth_enabled cannot both be true."),
        # limits >= requests
        ({"containerResourceRequirements": {"cpu": 1, "cpuLimit": 0.5}}, "containerResourceRequirements.cpuLimit", ">= containerResourceRequirements.cpu (1.0)"),
        ({"containerResourceRequirements": {"memoryInGB": 2, "memoryInGBLimit": 1}}, "containerResourceRequirements.memoryInGBLimit", ">= containerResourceRequirements.memoryInGB (2.0)"),
        ({"containerResourceRequirements": {"cpuLimit": 0.05}}, "containerResourceRequirements.cpuLimit", "(0.1)"),
        # stricter than v1
        ({"gpuCores": 1, "containerResourceRequirements": {"gpu": 2}}, "containerResourceRequirements.gpu", "disagrees with gpuCores (1)"),
        ({"keys": {"secondaryKey": OTHER_SECRET}}, "keys.secondaryKey", "needs keys.primaryKey"),
        ({"authEnabled": False, "keys": {"primaryKey": SECRET}}, "keys", "only used with key auth"),
        ({"livenessProbeRequirements": {"successThreshold": 2}}, "livenessProbeRequirements.successThreshold", "must be 1"),
    ],
)
def test_cross_field_rule(fields, key, fragment):
    found = problems({"computeType": "AKS", **fields})
    assert key in found, found
    assert fragment in found[key]


POSITIVE = [
    "autoScaler.minReplicas",
    "autoScaler.maxReplicas",
    "autoScaler.refreshPeriodInSeconds",
    "autoScaler.targetUtilization",
    "containerResourceRequirements.cpu",
    "containerResourceRequirements.memoryInGB",
    "containerResourceRequirements.cpuLimit",
    "containerResourceRequirements.memoryInGBLimit",
    "livenessProbeRequirements.periodSeconds",
    "livenessProbeRequirements.initialDelaySeconds",
    "livenessProbeRequirements.timeoutSeconds",
    "livenessProbeRequirements.successThreshold",
    "livenessProbeRequirements.failureThreshold",
    "scoringTimeoutMs",
    "maxConcurrentRequestsPerContainer",
    "maxQueueWaitMs",
    "expectedServiceTimeMs",
    "numReplicas",
]


def _nested(dotted: str, value) -> dict:
    head, _, rest = dotted.partition(".")
    return {head: _nested(rest, value) if rest else value}


@pytest.mark.parametrize("key", POSITIVE)
@pytest.mark.parametrize("value", [0, -1])
def test_must_be_greater_than_zero(key, value):
    document = {"computeType": "AKS", **_nested(key, value)}
    if key.startswith("autoScaler."):
        document["autoScaler"]["autoscaleEnabled"] = True
    found = problems(document)
    assert "greater than 0" in found[key]


@pytest.mark.parametrize("key", ["gpuCores", "containerResourceRequirements.gpu"])
def test_gpu_may_be_zero_but_not_negative(key):
    assert parse_deployment({"computeType": "AKS", **_nested(key, 0)})[1] == []
    assert "greater than or equal to 0" in problems({"computeType": "AKS", **_nested(key, -1)})[key]


def test_target_utilization_has_no_upper_bound_as_in_v1():
    config, issues = parse(autoScaler={"autoscaleEnabled": True, "targetUtilization": 150})
    assert issues == [] and config.target_utilization == pytest.approx(1.5)


@pytest.mark.parametrize("namespace", ["a", "team-a", "x" * 63, "0abc"])
def test_namespace_accepted(namespace):
    assert parse(namespace=namespace)[1] == []


@pytest.mark.parametrize("namespace", ["Team", "-a", "a-", "x" * 64, "a_b", ""])
def test_namespace_rejected(namespace):
    assert "Kubernetes namespace" in problems({"computeType": "AKS", "namespace": namespace})["namespace"]


@pytest.mark.parametrize(
    "fields, key, fragment",
    [
        ({"numReplicas": "2"}, "numReplicas", "valid integer"),
        ({"numReplicas": 2.5}, "numReplicas", "valid integer"),
        ({"authEnabled": "false"}, "authEnabled", "valid boolean"),
        ({"containerResourceRequirements": {"cpu": "1"}}, "containerResourceRequirements.cpu", "valid number"),
        ({"tags": {"version": 1}}, "tags.version", "valid string"),
    ],
)
def test_types_are_strict(fields, key, fragment):
    assert fragment in problems({"computeType": "AKS", **fields})[key]


def test_unknown_keys_are_rejected_with_the_closest_key():
    found = problems({"computeType": "AKS", "scoringTimeoutMS": 1000, "autoScaler": {"autoscaleEnabled": True, "maxReplica": 3}})
    assert "did you mean 'scoringTimeoutMs'?" in found["scoringTimeoutMS"]
    assert "did you mean 'maxReplicas'?" in found["autoScaler.maxReplica"]


def test_keys_v1_ignored_get_a_pointer_to_their_new_home():
    found = problems({"computeType": "AKS", "sslEnabled": True})
    assert "v1 ignored it" in found["sslEnabled"] and "router" in found["sslEnabled"]


def test_all_problems_are_reported_at_once():
    found = problems(
        {
            "computeType": "AKS",
            "numReplicas": 0,
            "scoringTimeoutMs": -5,
            "authEnabled": True,
            "tokenAuthEnabled": True,
            "containerResourceRequirements": {"cpu": 2, "cpuLimit": 1},
        }
    )
    assert set(found) == {"numReplicas", "scoringTimeoutMs", "tokenAuthEnabled", "containerResourceRequirements.cpuLimit"}


def test_key_values_never_appear_in_errors():
    _, issues = parse_deployment(key="", data={"computeType": "AKS", "authEnabled": False, "keys": {"primaryKey": SECRET, "secondaryKey": "short key"}})
    text = "\n".join(str(issue) for issue in issues)
    assert SECRET not in text and "short key" not in text
    assert REDACTED in text


@pytest.mark.parametrize(
    "fields, mode",
    [
        ({}, "key"),
        ({"authEnabled": True}, "key"),
        ({"authEnabled": False}, "none"),
        ({"tokenAuthEnabled": True}, "token"),
        ({"authEnabled": False, "tokenAuthEnabled": True}, "token"),
    ],
)
def test_auth_mode(fields, mode):
    config, issues = parse(**fields)
    assert issues == [] and config.auth_mode == mode


@pytest.mark.parametrize("fields, count", [({"gpuCores": 2}, 2), ({"containerResourceRequirements": {"gpu": 1}}, 1), ({}, 0)])
def test_gpu_count_reads_both_keys(fields, count):
    assert parse(**fields)[0].gpu_count == count


def test_overrides_deep_merge_and_name_their_origin():
    file_document = {"computeType": "aks", "autoScaler": {"autoscaleEnabled": True, "minReplicas": 2, "maxReplicas": 4}, "numReplicas": 3}
    overrides = {"autoScaler": {"maxReplicas": 1}, "scoringTimeoutMs": 0}
    config, issues = parse_deployment(file_document, "models[0].deployment", overrides, "svc/deploymentconfig.json")
    found = {issue.key: issue.problem for issue in issues}
    assert config is None
    # numReplicas and minReplicas come from the file, the bad timeout from the stack override
    assert found["models[0].deployment.numReplicas"].endswith("[set in svc/deploymentconfig.json]")
    assert found["models[0].deployment.autoScaler.minReplicas"] == (
        "must be <= autoScaler.maxReplicas (1) [set in svc/deploymentconfig.json]"
    )
    assert "[set in" not in found["models[0].deployment.scoringTimeoutMs"]


def test_null_override_removes_the_file_value():
    file_document = {"computeType": "AKS", "numReplicas": 3}
    config, issues = parse_deployment(file_document, key="", overrides={"numReplicas": None, "autoScaler": {"autoscaleEnabled": True, "maxReplicas": 6}})
    assert issues == []
    assert config.num_replicas is None and config.autoscale_on and config.max_replicas == 6


# --------------------------------------------------------------------------- tokenAuthorization (extension)

CLIENT = "0000000A-0000-0000-0000-000000000001"


def test_token_authorization_is_read_for_a_token_service_from_the_file_or_the_overrides():
    rules = {"requiredRoles": ["Model.Score", "Scorers/Read"], "allowedClientIds": [CLIENT], "audience": "api://fraud-model"}
    config, issues = parse_deployment({"computeType": "AKS"}, key="", overrides={"tokenAuthEnabled": True, "tokenAuthorization": rules})
    assert issues == []
    assert config.token_authorization.required_roles == ["Model.Score", "Scorers/Read"]
    assert config.token_authorization.allowed_client_ids == [CLIENT.lower()]  # Entra writes GUIDs in lower case
    assert config.token_authorization.audience == "api://fraud-model"
    assert parse(tokenAuthEnabled=True, tokenAuthorization={})[0].token_authorization.required_roles == []


@pytest.mark.parametrize("fields", [{}, {"authEnabled": True}, {"authEnabled": False}])
def test_token_authorization_needs_token_auth(fields):
    found = problems({"computeType": "AKS", **fields, "tokenAuthorization": {"requiredRoles": ["Model.Score"]}})
    mode = "none" if fields.get("authEnabled") is False else "key"
    assert found == {"tokenAuthorization": f"applies to token auth only, but auth is {mode}; allowed: set tokenAuthEnabled to true, or remove tokenAuthorization"}


ROLE_RULE = "must be an Entra app role value"
CLIENT_RULE = "must be an application (client) id, a GUID"
AUDIENCE_RULE = "must be the token audience (aud) this service accepts, 1-256 characters without spaces or control characters"


@pytest.mark.parametrize(
    ("rules", "key", "fragment"),
    [
        ({"requiredRoles": ["Model Score"]}, "tokenAuthorization.requiredRoles[0]", ROLE_RULE),
        ({"requiredRoles": [".hidden"]}, "tokenAuthorization.requiredRoles[0]", ROLE_RULE),
        ({"requiredRoles": ["ok", 'quo"te']}, "tokenAuthorization.requiredRoles[1]", ROLE_RULE),
        ({"requiredRoles": ["r" * 121]}, "tokenAuthorization.requiredRoles[0]", ROLE_RULE),
        ({"requiredRoles": ["Rôle"]}, "tokenAuthorization.requiredRoles[0]", ROLE_RULE),
        ({"requiredRoles": "Model.Score"}, "tokenAuthorization.requiredRoles", "valid list"),
        ({"requiredRoles": ["r"] * 33}, "tokenAuthorization.requiredRoles", "at most 32"),
        ({"allowedClientIds": ["my-app"]}, "tokenAuthorization.allowedClientIds[0]", CLIENT_RULE),
        ({"allowedClientIds": ["{00000000-0000-0000-0000-000000000001}"]}, "tokenAuthorization.allowedClientIds[0]", CLIENT_RULE),
        ({"audience": ""}, "tokenAuthorization.audience", AUDIENCE_RULE),
        ({"audience": "api://a b"}, "tokenAuthorization.audience", AUDIENCE_RULE),
        ({"audience": "api://a\u0000"}, "tokenAuthorization.audience", AUDIENCE_RULE),
        ({"audience": "a" * 257}, "tokenAuthorization.audience", AUDIENCE_RULE),
        ({"roles": ["Model.Score"]}, "tokenAuthorization.roles", "unknown key"),
    ],
)
def test_token_authorization_values_are_checked(rules, key, fragment):
    found = problems({"computeType": "AKS", "tokenAuthEnabled": True, "tokenAuthorization": rules})
    assert list(found) == [key] and fragment in found[key]


# --------------------------------------------------------------------------- expectedServiceTimeMs (extension)


@pytest.mark.parametrize("expected", [1, 250, 60000])
def test_an_expected_service_time_up_to_the_scoring_timeout_is_accepted(expected):
    config, issues = parse(expectedServiceTimeMs=expected)
    assert issues == [] and config.expected_service_time_ms == expected


def test_an_expected_service_time_beyond_the_scoring_timeout_is_a_keyed_error():
    found = problems({"computeType": "AKS", "scoringTimeoutMs": 5000, "expectedServiceTimeMs": 5001})
    assert list(found) == ["expectedServiceTimeMs"]
    assert found["expectedServiceTimeMs"].startswith("must be <= scoringTimeoutMs (5000)")


@pytest.mark.parametrize(("value", "says"), [("100", "valid integer"), (2.5, "valid integer"), (0, "greater than 0"), (2**31, "less than or equal")])
def test_an_expected_service_time_that_is_not_a_positive_whole_number_is_a_keyed_error(value, says):
    assert says in problems({"computeType": "AKS", "expectedServiceTimeMs": value})["expectedServiceTimeMs"]
