"""The discovery contract: model Service annotations, EndpointSlices and key Secrets in, routes out; what it
cannot serve refused, one Service at a time."""

import base64

import pytest

from router.autoscaler import AutoscaleSettings
from router.discovery import (
    AUTH,
    DEPLOYMENT,
    KEYS_SECRET,
    MAX_CONCURRENT,
    MAX_QUEUE_WAIT_MS,
    MODEL_SERVICE_LABEL,
    SCORING_TIMEOUT_MS,
    SERVICE_NAME,
    SERVICE_NAME_LABEL,
    TOKEN_AUTHORIZATION,
    annotations_for,
    discover,
    named_secrets,
)
from router.discovery import (
    AUTOSCALE as AUTOSCALE_ANNOTATION,
)
from router.spec import Endpoint, ServiceRoute, TokenAuthorization

AUTOSCALE = AutoscaleSettings(
    min_replicas=2, max_replicas=5, target_utilization=0.6, refresh_seconds=1, scale_down_window_seconds=120,
    max_concurrent=2, fixed_replicas=2,
)


def _service(name="diabetes", namespace="models", labelled=True):
    return {
        "metadata": {
            "name": f"{name}-svc",
            "namespace": namespace,
            "labels": {MODEL_SERVICE_LABEL: "true"} if labelled else {},
            "annotations": annotations_for(
                ServiceRoute(name, namespace, auth="key", scoring_timeout_ms=5000, max_concurrent=2, max_queue_wait_ms=800),
                deployment=f"{name}-deploy", autoscale=AUTOSCALE, keys_secret=f"{name}-keys",
            ),
        }
    }


def test_discovery_reads_the_contract():
    slice_ = {
        "metadata": {"name": "diabetes-svc-abc", "namespace": "models", "labels": {SERVICE_NAME_LABEL: "diabetes-svc"}},
        "ports": [{"name": "http", "port": 5001}, {"name": "metrics", "port": 9000}],
        "endpoints": [
            {"addresses": ["10.244.1.7"], "conditions": {"ready": True}},
            {"addresses": ["10.244.2.9"], "conditions": {"ready": False}},  # not ready: not routed
        ],
    }
    secret = {
        "metadata": {"name": "diabetes-keys", "namespace": "models"},
        "data": {"primaryKey": base64.b64encode(b"p" * 32).decode(), "secondaryKey": base64.b64encode(b"s" * 32).decode()},
    }
    found = discover([_service(), _service("other", labelled=False)], [slice_], [secret])
    assert len(found) == 1
    route = found[0].route
    assert route == ServiceRoute("diabetes", "models", "key", ("p" * 32, "s" * 32), 5000, 2, 800, (Endpoint("10.244.1.7", 5001),))
    assert found[0].deployment == "diabetes-deploy"
    assert found[0].autoscale == AUTOSCALE


@pytest.mark.parametrize(
    ("annotation", "value", "problem"),
    [
        (MAX_CONCURRENT, "abc", "aks-inference/max-concurrent='abc' is not a whole number"),
        (SCORING_TIMEOUT_MS, "1e3", "aks-inference/scoring-timeout-ms='1e3' is not a whole number"),
        (MAX_QUEUE_WAIT_MS, "-5", "aks-inference/max-queue-wait-ms='-5' is not a whole number"),
        (SCORING_TIMEOUT_MS, "0", "aks-inference/scoring-timeout-ms=0 must be a whole number from 1 to 2147483647"),  # 0 = no timeout
        (MAX_CONCURRENT, str(2**32), "aks-inference/max-concurrent=4294967296 must be a whole number from 1 to 2147483647"),
        (AUTOSCALE_ANNOTATION, "{", "aks-inference/autoscale='{' is not JSON"),
        (AUTOSCALE_ANNOTATION, "[" * 100_000, "aks-inference/autoscale='" + "[" * 76 + "... is not JSON"),  # too deep to parse, cut short
        (AUTOSCALE_ANNOTATION, "[1]", "aks-inference/autoscale='[1]' is not a JSON object"),
        (AUTOSCALE_ANNOTATION, '{"min": "2"}', "aks-inference/autoscale min='2' must be a whole number from 1 to 2147483647"),
        (AUTOSCALE_ANNOTATION, '{"enabled": "false"}', "aks-inference/autoscale enabled='false' must be true or false"),
        (AUTOSCALE_ANNOTATION, '{"targetUtilization": 0}', "aks-inference/autoscale targetUtilization=0 must be a fraction above 0, at most 1"),
        (AUTOSCALE_ANNOTATION, '{"refreshSeconds": NaN}', "aks-inference/autoscale refreshSeconds=nan must be a number of seconds above 0"),
        (AUTOSCALE_ANNOTATION, '{"min": 5, "max": 2}', "aks-inference/autoscale min=5 is above max=2"),
        (SERVICE_NAME, "Diabetes/../x", "aks-inference/service-name='Diabetes/../x' is not a service name (3-32 lower-case letters, digits and dashes; a letter first, no dash last)"),
        (DEPLOYMENT, "Bad_Name", "aks-inference/deployment='Bad_Name' is not a Deployment name"),
        (KEYS_SECRET, "../other", "aks-inference/keys-secret='../other' is not a Secret name"),
    ],
)
def test_one_malformed_annotation_refuses_that_service_alone_naming_the_annotation_and_value(annotation, value, problem):
    broken = _service("broken")
    broken["metadata"]["annotations"][annotation] = value
    found = {d.source: d for d in discover([_service(), broken], [], [])}  # never raises
    assert found["models/diabetes-svc"].route.problems == ()
    assert problem in found["models/broken-svc"].route.problems, found["models/broken-svc"].route.problems


@pytest.mark.parametrize("auth", ["Key", "KEY", "none ", "", "token,none", "basic"])
def test_an_auth_other_than_key_token_or_none_is_refused(auth):
    service = _service()
    service["metadata"]["annotations"][AUTH] = auth
    [found] = discover([service], [], [])
    assert found.route.auth == auth  # handed on as written: the renderer answers 403 to anything it does not know
    assert found.route.problems == (f"aks-inference/auth={auth!r} is not one of key, token, none (exactly, lower case)",)


def test_a_secret_that_is_not_base64_is_a_problem_and_never_shows_the_key():
    secret = {"metadata": {"name": "diabetes-keys", "namespace": "models"}, "data": {"primaryKey": "not base64 !", "secondaryKey": base64.b64encode(b"\xff\xfe").decode()}}
    [found] = discover([_service()], [], [secret])
    assert found.route.problems == (
        "Secret models/diabetes-keys: primaryKey is not base64-encoded UTF-8",
        "Secret models/diabetes-keys: secondaryKey is not base64-encoded UTF-8",
    )


def test_services_claiming_one_name_or_one_cluster_are_all_refused():
    """The same URL name in two namespaces would hand one's traffic to the other; model-a-b + c and
    model-a + b-c would be one cluster, which Envoy rejects for every service."""
    same_name = [_service("diabetes", "models"), _service("diabetes", "vision")]
    clash = [_service("cde", "a-b"), _service("b-cde", "a")]
    found = discover([*same_name, *clash, _service("iris")], [], [])
    problems = {d.source: d.route.problems for d in found}
    assert problems["models/diabetes-svc"] == problems["vision/diabetes-svc"] == (
        "service name 'diabetes' is claimed by 2 services (namespaces models, vision)",
    )
    assert problems["a-b/cde-svc"] == problems["a/b-cde-svc"] == ("cluster 'model-a-b-cde' would serve a-b/cde and a/b-cde",)
    assert problems["models/iris-svc"] == ()


def test_only_the_secrets_model_services_name_are_read():
    unlabelled = _service("other", labelled=False)
    bad_name = _service("odd")
    bad_name["metadata"]["annotations"][KEYS_SECRET] = "../../secrets"
    assert named_secrets([_service(), _service("iris", "vision"), unlabelled, bad_name]) == [("models", "diabetes-keys"), ("vision", "iris-keys")]


def _token_service(rules: TokenAuthorization) -> dict:
    return {
        "metadata": {
            "name": "scorer-svc",
            "namespace": "models",
            "labels": {MODEL_SERVICE_LABEL: "true"},
            "annotations": annotations_for(ServiceRoute("scorer", auth="token", token_authorization=rules), deployment="scorer", autoscale=AUTOSCALE, keys_secret=None),
        }
    }


def test_token_rules_round_trip_through_the_annotation():
    rules = TokenAuthorization(("Model.Score", "Model.Read"), ("00000000-0000-0000-0000-000000000001",), "api://own")
    service = _token_service(rules)
    assert service["metadata"]["annotations"][TOKEN_AUTHORIZATION] == (
        '{"allowedClientIds": ["00000000-0000-0000-0000-000000000001"], "audience": "api://own", "requiredRoles": ["Model.Score", "Model.Read"]}'
    )
    [found] = discover([service], [], [])
    assert found.route.token_authorization == rules and found.route.problems == ()
    # none: no annotation at all, and a Service without one has no rules
    plain = _token_service(TokenAuthorization())
    assert TOKEN_AUTHORIZATION not in plain["metadata"]["annotations"]
    assert discover([plain], [], [])[0].route.token_authorization == TokenAuthorization()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{", "aks-inference/token-authorization='{' is not JSON"),
        ('["Model.Score"]', """aks-inference/token-authorization='["Model.Score"]' is not a JSON object"""),
        ('{"requiredRoles": "Model.Score"}', "aks-inference/token-authorization requiredRoles='Model.Score' must be a list of strings"),
        ('{"allowedClientIds": [1]}', "aks-inference/token-authorization allowedClientIds=[1] must be a list of strings"),
        ('{"audience": ["api://own"]}', "aks-inference/token-authorization audience=['api://own'] must be a string"),
        ('{"roles": ["Model.Score"]}', "aks-inference/token-authorization: unknown keys ['roles']; allowed: requiredRoles, allowedClientIds, audience"),
        ('{"requiredRoles": ["Model Score"]}', "aks-inference/token-authorization requiredRoles: 'Model Score' must be 1-256 printable characters without whitespace"),
    ],
)
def test_a_malformed_token_authorization_refuses_that_service_alone(value, problem):
    broken = _token_service(TokenAuthorization())
    broken["metadata"]["annotations"][TOKEN_AUTHORIZATION] = value
    found = {d.source: d for d in discover([_service(), broken], [], [])}  # never raises
    assert found["models/diabetes-svc"].route.problems == ()
    assert found["models/scorer-svc"].route.problems == (problem,)


def test_token_rules_on_a_key_service_refuse_it():
    service = _service()
    service["metadata"]["annotations"][TOKEN_AUTHORIZATION] = '{"audience": "api://own"}'
    [found] = discover([service], [], [])
    assert found.route.problems == (
        "aks-inference/token-authorization is set but auth='key': roles, clients and audience apply to token auth only",
    )
