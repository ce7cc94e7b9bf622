"""The discovery contract: model Service annotations, EndpointSlices and key Secrets in, routes out; what it
cannot serve refused, one Service at a time. Endpoint Services (versions, traffic, rollout) likewise, one endpoint at a time."""

import base64
import json
from dataclasses import replace

import pytest

from router.autoscaler import AutoscaleSettings
from router.canary import RolloutPolicy
from router.discovery import (
    AUTH,
    DEPLOYMENT,
    ENDPOINT,
    ENDPOINT_LABEL,
    KEYS_SECRET,
    MAX_CONCURRENT,
    MAX_QUEUE_WAIT_MS,
    MODEL_SERVICE_LABEL,
    SCORING_TIMEOUT_MS,
    SERVICE_NAME,
    SERVICE_NAME_LABEL,
    TOKEN_AUTHORIZATION,
    VERSIONS,
    annotations_for,
    discover,
    discover_endpoints,
    endpoint_annotations,
    named_secrets,
)
from router.discovery import (
    AUTOSCALE as AUTOSCALE_ANNOTATION,
)
from router.spec import (
    Endpoint,
    EndpointRoute,
    ServiceRoute,
    TokenAuthorization,
    VersionShare,
)

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


# --------------------------------------------------------------------------- the deployment's service-time estimate


def test_the_expected_service_time_round_trips_and_is_absent_by_default():
    from dataclasses import replace

    from router.discovery import EXPECTED_SERVICE_TIME_MS

    declared = _service("declared")
    route = ServiceRoute("declared", "models", auth="key", scoring_timeout_ms=5000, max_concurrent=2, max_queue_wait_ms=800, expected_service_time_ms=400)
    declared["metadata"]["annotations"] = annotations_for(route, deployment="declared-deploy", autoscale=AUTOSCALE, keys_secret="declared-keys")
    assert declared["metadata"]["annotations"][EXPECTED_SERVICE_TIME_MS] == "400"
    assert EXPECTED_SERVICE_TIME_MS not in _service()["metadata"]["annotations"]
    found = {d.source: d.route for d in discover([_service(), declared], [], [])}
    assert found["models/declared-svc"].expected_service_time_ms == 400 and found["models/declared-svc"].problems == ()
    assert found["models/diabetes-svc"].expected_service_time_ms is None
    # the estimate sizes the discovered route's cold queue: 1 slot x 2 per replica x 800 ms / 400 ms
    assert replace(found["models/declared-svc"], endpoints=(Endpoint("10.0.0.1", 5001),)).queue_capacity() == 4


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("fast", "aks-inference/expected-service-time-ms='fast' is not a whole number"),
        ("-1", "aks-inference/expected-service-time-ms='-1' is not a whole number"),
        ("0", "aks-inference/expected-service-time-ms=0 must be a whole number of milliseconds from 1 to the scoring timeout (5000)"),
        ("5001", "aks-inference/expected-service-time-ms=5001 must be a whole number of milliseconds from 1 to the scoring timeout (5000)"),
    ],
)
def test_a_malformed_expected_service_time_refuses_that_service_alone(value, problem):
    from router.discovery import EXPECTED_SERVICE_TIME_MS

    broken = _service("broken")
    broken["metadata"]["annotations"][EXPECTED_SERVICE_TIME_MS] = value
    found = {d.source: d for d in discover([_service(), broken], [], [])}
    assert found["models/diabetes-svc"].route.problems == ()
    assert problem in found["models/broken-svc"].route.problems, found["models/broken-svc"].route.problems


# --------------------------------------------------------------------------- versioned endpoints

SCORER = EndpointRoute(
    "scorer",
    versions=(VersionShare("v-one", 90, is_default=True, version_type="control"), VersionShare("v-two", 10), VersionShare("v-shadow", 0, 20)),
)
POLICY = RolloutPolicy("v-one", "v-two", (10, 50, 100), 120.0, 0.02, 1.5, 50, (("v-shadow", 0),))


def _version(name: str, endpoint: str = "scorer", namespace: str = "models") -> dict:
    service = _service(name, namespace)
    service["metadata"]["annotations"][ENDPOINT] = endpoint
    service["metadata"]["annotations"][KEYS_SECRET] = "scorer-keys"  # the endpoint's keys: one scoring URI, one set of keys
    return service


def _endpoint(endpoint: EndpointRoute = SCORER, rollout: RolloutPolicy | None = POLICY, namespace: str = "models") -> dict:
    return {
        "metadata": {
            "name": f"{endpoint.name}-endpoint",
            "namespace": namespace,
            "labels": {MODEL_SERVICE_LABEL: "true", ENDPOINT_LABEL: "true"},
            "annotations": endpoint_annotations(endpoint, keys_secret=f"{endpoint.name}-keys", rollout=rollout),
        }
    }


KEYS = {"metadata": {"name": "scorer-keys", "namespace": "models"}, "stringData": {"primaryKey": "p" * 32, "secondaryKey": "s" * 32}}


def _discover_all(services: list[dict], secrets: list[dict] = (KEYS,)):
    found = discover(services, [], list(secrets))
    return found, {d.source: d for d in discover_endpoints(services, list(secrets), found)}


def test_an_endpoint_and_its_versions_round_trip_through_the_annotations():
    services = [_endpoint(), _version("v-one"), _version("v-two"), _version("v-shadow"), _service()]
    found, endpoints = _discover_all(services)
    assert [d.route.name for d in found] == ["diabetes", "v-one", "v-shadow", "v-two"]  # the endpoint is no service of its own
    assert {d.route.name: d.route.endpoint for d in found} == {"diabetes": None, "v-one": "scorer", "v-shadow": "scorer", "v-two": "scorer"}
    assert all(d.route.problems == () for d in found)
    discovered = endpoints["models/scorer-endpoint"]
    assert discovered.route == replace(SCORER, keys=("p" * 32, "s" * 32))
    assert discovered.rollout == replace(POLICY, revision=discovered.revision) and len(discovered.revision) == 12
    assert json.loads(_endpoint()["metadata"]["annotations"][VERSIONS])[0] == {
        "name": "v-one", "trafficPercentile": None, "isDefault": True, "versionType": "control", "mirrorPercentile": 0}
    assert named_secrets(services) == [("models", "diabetes-keys"), ("models", "scorer-keys")]


def test_the_revision_follows_the_versions_and_the_rollout_only():
    revision = _discover_all([_endpoint(), _version("v-one"), _version("v-two")])[1]["models/scorer-endpoint"].revision
    keyless = _endpoint()
    keyless["metadata"]["annotations"][AUTH] = "none"
    del keyless["metadata"]["annotations"][KEYS_SECRET]
    shifted = replace(SCORER, versions=(replace(SCORER.versions[0], weight=80), replace(SCORER.versions[1], weight=20), SCORER.versions[2]))
    revisions = [_discover_all([service])[1]["models/scorer-endpoint"].revision for service in (keyless, _endpoint(shifted), _endpoint(rollout=None))]
    assert revisions[0] == revision and len({revision, revisions[1], revisions[2]}) == 3


V = "aks-inference/versions"
R = "aks-inference/rollout"


@pytest.mark.parametrize(
    ("annotation", "value", "problem"),
    [
        (V, None, f"{V} is missing: an endpoint lists its versions"),
        (V, "{", f"{V}='{{' is not JSON"),
        (V, "[" * 100_000, f"{V}='" + "[" * 76 + "... is not JSON"),
        (V, '{"name": "v-one"}', f"""{V}='{{"name": "v-one"}}' is not a JSON list"""),
        (V, '["v-one"]', f"{V}[0]='v-one' is not a JSON object"),
        (V, '[{"name": 1, "isDefault": true}]', f"{V}[0] name=1 must be a string (the version's service name)"),
        (V, '[{"name": "v-one", "isDefault": "yes"}]', f"{V}[0] isDefault='yes' must be true or false"),
        (V, '[{"name": "v-one", "isDefault": true, "versionType": "canary"}]', f"{V}[0] versionType='canary' is not one of control, treatment"),
        (V, '[{"name": "v-one", "isDefault": true, "weight": 100}]', f"{V}[0]: unknown keys ['weight']; allowed: name, trafficPercentile, isDefault, versionType, mirrorPercentile"),
        (V, '[{"name": "v-one", "isDefault": true, "trafficPercentile": 90}]', f"{V}[0] trafficPercentile=90: the default takes the rest; allowed: null"),
        (V, '[{"name": "v-one", "isDefault": true}, {"name": "v-two", "trafficPercentile": "10"}]', f"{V}[1] trafficPercentile='10' must be a whole number from 0 to 100"),
        (V, '[{"name": "v-one", "isDefault": true}, {"name": "v-two", "trafficPercentile": 10.5}]', f"{V}[1] trafficPercentile=10.5 must be a whole number from 0 to 100"),
        (V, '[{"name": "v-one", "isDefault": true}, {"name": "v-two", "mirrorPercentile": -1}]', f"{V}[1] mirrorPercentile=-1 must be a whole number from 0 to 100"),
        (V, '[{"name": "v-one", "isDefault": true}, {"name": "v-two", "trafficPercentile": 70}, {"name": "v-shadow", "trafficPercentile": 60}]',
         f"{V}: the trafficPercentile of the non-default versions sum to 130; at most 100"),
        (V, '[{"name": "v-one", "isDefault": true}, {"name": "v-two", "isDefault": true}]',
         f"{V}: 2 default versions (v-one, v-two); exactly one takes the traffic the others leave"),
        (V, '[{"name": "v-one"}, {"name": "v-two", "trafficPercentile": 100}]', f"{V}: 0 default versions (none); exactly one takes the traffic the others leave"),
        (V, '[{"name": "v-one", "isDefault": true}, {"name": "v-nine", "trafficPercentile": 10}]', f"{V}[1] 'v-nine' answers 10% of requests but no such service was found"),
        (V, json.dumps([{"name": f"v-{i}00", "isDefault": i == 0} for i in range(7)]), f"{V}: 7 versions; an endpoint has 1 to 6 (v1's AksEndpoint limit)"),
        (V, '[{"name": "v-one", "isDefault": true}, {"name": "v-two", "trafficPercentile": 10, "mirrorPercentile": 10}]',
         f"{V}[1] 'v-two': a shadow (mirror_percent=10) answers no client: weight 0 and not the default"),
        (R, "[10]", f"{R}='[10]' is not a JSON object"),
        (R, '{"steps": [50, 10]}', f"{R} steps=[50, 10] must be strictly increasing whole percents from 1 to 100, e.g. [10, 25, 50, 100]"),
        (R, '{"steps": []}', f"{R} steps=[] must be strictly increasing whole percents from 1 to 100, e.g. [10, 25, 50, 100]"),
        (R, '{"steps": [10], "minRequests": 0}', f"{R} minRequests=0 must be a whole number from 1 to 2147483647"),
        (R, '{"steps": [10], "maxServerErrorRate": 2}', f"{R} maxServerErrorRate=2 must be a fraction from 0 to 1"),
        (R, '{"steps": [10], "maxP99LatencyRatio": Infinity}', f"{R} maxP99LatencyRatio=inf must be a number, 1 or more"),
        (R, '{"steps": [10], "analysisWindowSeconds": "300"}', f"{R} analysisWindowSeconds='300' must be a number of seconds above 0"),
        (R, '{"steps": [10], "window": 300}', f"{R}: unknown keys ['window']; allowed: steps, analysisWindowSeconds, maxServerErrorRate, maxP99LatencyRatio, minRequests"),
        (SERVICE_NAME, "Scorer", "aks-inference/service-name='Scorer' is not a service name (3-32 lower-case letters, digits and dashes; a letter first, no dash last)"),
        (AUTH, "Key", "aks-inference/auth='Key' is not one of key, token, none (exactly, lower case)"),
        (KEYS_SECRET, "../x", "aks-inference/keys-secret='../x' is not a Secret name"),
        (TOKEN_AUTHORIZATION, '{"audience": "api://own"}', "aks-inference/token-authorization is set but auth='key': roles, clients and audience apply to token auth only"),
    ],
)
def test_one_malformed_endpoint_annotation_refuses_that_endpoint_alone(annotation, value, problem):
    broken = _endpoint()
    if value is None:
        del broken["metadata"]["annotations"][annotation]
    else:
        broken["metadata"]["annotations"][annotation] = value
    good = _endpoint(EndpointRoute("healthy", versions=(VersionShare("h-one", 100, is_default=True),)), rollout=None)
    services = [broken, good, _version("h-one", "healthy"), _version("v-one"), _version("v-two"), _version("v-shadow"), _service()]
    found, endpoints = _discover_all(services)  # never raises
    refused = endpoints["models/scorer-endpoint"]
    assert problem in refused.route.problems, refused.route.problems
    assert refused.rollout is None
    assert endpoints["models/healthy-endpoint"].route.problems == ()
    assert all(d.route.problems == () for d in found)


def test_a_rollout_needs_one_treatment_answering_clients():
    two_treatments = replace(SCORER, versions=(SCORER.versions[0], replace(SCORER.versions[1], weight=5), VersionShare("v-shadow", 5)))
    [discovered] = _discover_all([_endpoint(two_treatments), _version("v-one"), _version("v-two"), _version("v-shadow")])[1].values()
    assert discovered.rollout is None and discovered.route.problems == (
        f"{R} needs one default version (the control) and one treatment that answers clients (the canary); {V} has 1 and 2",)


def test_a_service_claiming_an_endpoints_name_and_the_endpoint_are_both_refused():
    services = [_endpoint(), _service("scorer"), _version("v-one"), _version("v-two"), _version("v-shadow")]
    found, endpoints = _discover_all(services)
    claimed = "service name 'scorer' is claimed by 2 services (namespaces models)"
    assert {d.route.name: d.route.problems for d in found}["scorer"] == (claimed,)
    assert endpoints["models/scorer-endpoint"].route.problems == (claimed,)


def test_a_version_marked_with_an_impossible_endpoint_is_refused():
    [found] = discover([_version("v-one", endpoint="Not/A/Name")], [], [])
    assert found.route.problems == ("aks-inference/endpoint='Not/A/Name' is not the service name of another service (the endpoint this version belongs to)",)


@pytest.mark.parametrize("where", ["refused", "other-namespace", "unmarked"])
def test_an_answering_version_that_cannot_serve_refuses_the_endpoint_but_a_shadow_does_not(where):
    bad = {
        "refused": lambda name: {**_version(name), "metadata": {**_version(name)["metadata"], "annotations": {**_version(name)["metadata"]["annotations"], MAX_CONCURRENT: "0"}}},
        "other-namespace": lambda name: _version(name, namespace="vision"),
        "unmarked": lambda name: _service(name),
    }[where]
    answering = _discover_all([_endpoint(), _version("v-one"), bad("v-two"), _version("v-shadow")])[1]["models/scorer-endpoint"]
    assert len(answering.route.problems) == 1 and answering.route.problems[0].startswith(f"{V}[1] 'v-two' answers 10% of requests but ")
    shadowed = _discover_all([_endpoint(), _version("v-one"), _version("v-two"), bad("v-shadow")])[1]["models/scorer-endpoint"]
    assert shadowed.route.problems == ()
