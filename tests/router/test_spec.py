"""The gate in front of Envoy's shared files: every value a service carries is checked before it is rendered."""

from __future__ import annotations

from dataclasses import replace

import pytest

from router.spec import (
    INT32_MAX,
    MAX_ENDPOINT_VERSIONS,
    MAX_TOKEN_CLAIM_LENGTH,
    MAX_TOKEN_CLAIM_VALUES,
    PERCENT,
    SYSTEM_CA_BUNDLE,
    UINT32_MAX,
    Endpoint,
    EndpointRoute,
    RouterSettings,
    ServiceRoute,
    TokenAuthorization,
    VersionShare,
    endpoint_problems,
    refuse_unsafe,
    refuse_unsafe_endpoints,
    route_problems,
    served_versions,
    with_live_split,
)

GOOD = ServiceRoute("diabetes", keys=("p" * 32, "s" * 32), endpoints=(Endpoint("10.244.1.7", 5001), Endpoint("fd00::7", 5001)))


def test_a_route_with_safe_values_has_no_problem():
    assert route_problems(GOOD) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        # Each of these made Envoy reject the whole file (checked with `envoy --mode validate`) or serve unsafely.
        ({"scoring_timeout_ms": 0}, "scoring_timeout_ms=0 must be a whole number from 1 to 2147483647"),  # 0: no timeout
        ({"scoring_timeout_ms": -1}, "scoring_timeout_ms=-1 must be a whole number from 1 to 2147483647"),
        ({"scoring_timeout_ms": 10**15}, "scoring_timeout_ms=1000000000000000 must be a whole number from 1 to 2147483647"),
        ({"max_concurrent": 0}, "max_concurrent=0 must be a whole number from 1 to 2147483647"),
        ({"max_concurrent": 2**32}, "max_concurrent=4294967296 must be a whole number from 1 to 2147483647"),
        ({"max_queue_wait_ms": 0}, "max_queue_wait_ms=0 must be a whole number from 1 to 2147483647"),
        ({"endpoints": (Endpoint("model.example", 5001),)}, "endpoints='model.example:5001' is not an IP address and port"),
        ({"endpoints": (Endpoint("10.0.0.1", 70000),)}, "endpoints='10.0.0.1:70000' is not an IP address and port"),
        ({"keys": ("k" * 32, "k" * 32)}, "keys: the primary and secondary key are the same (Envoy rejects duplicate keys)"),
        ({"keys": ("a\nb" * 8,)}, "keys: a key is empty or holds characters a header cannot carry"),
        ({"name": "a/b"}, "name='a/b' is not a service name (3-32 lower-case letters, digits and dashes; a letter first, no dash last)"),
        ({"namespace": "Models"}, "namespace='Models' is not a Kubernetes namespace name"),
        ({"auth": "Key"}, "auth='Key' is not one of key, token, none (exactly, lower case)"),
    ],
)
def test_every_value_envoy_would_reject_or_serve_open_is_a_problem(change, problem):
    assert route_problems(replace(GOOD, **change)) == [problem]


def test_a_problem_never_shows_a_key():
    assert not any("k" * 32 in p for p in route_problems(replace(GOOD, keys=("k" * 32, "k" * 32, "k" * 32))))


def test_routes_sharing_a_name_or_a_cluster_are_all_refused_and_checking_twice_changes_nothing():
    routes = [ServiceRoute("diabetes", "models"), ServiceRoute("diabetes", "vision"), ServiceRoute("cde", "a-b"), ServiceRoute("b-cde", "a"), GOOD]
    checked = refuse_unsafe(routes)
    assert [r.problems for r in checked] == [
        ("service name 'diabetes' is claimed by 3 services (namespaces models, vision)",),
        ("service name 'diabetes' is claimed by 3 services (namespaces models, vision)",),
        ("cluster 'model-a-b-cde' would serve a-b/cde and a/b-cde",),
        ("cluster 'model-a-b-cde' would serve a-b/cde and a/b-cde",),
        ("service name 'diabetes' is claimed by 3 services (namespaces models, vision)",),
    ]
    assert refuse_unsafe(checked) == checked


def test_a_route_refused_already_keeps_its_reasons():
    refused = replace(GOOD, max_concurrent=0, problems=("aks-inference/max-concurrent=0 must be ...",))
    assert refuse_unsafe([refused])[0].problems == ("aks-inference/max-concurrent=0 must be ...",)


def test_the_queue_never_exceeds_what_envoys_uint32_threshold_holds():
    many = ServiceRoute("big", max_concurrent=INT32_MAX, max_queue_wait_ms=INT32_MAX, latency_ms=0.001, endpoints=(GOOD.endpoints[0],))
    assert many.queue_capacity() == UINT32_MAX


def test_the_router_bounds_are_the_contracts():
    from contract import limits, v1_files

    assert INT32_MAX == limits.INT32_MAX
    for name in ("abc", "a" * 32, "diabetes-2"):
        assert route_problems(ServiceRoute(name)) == [] and v1_files.check_service_name(name) == name
    for name in ("ab", "a" * 33, "2abc", "abc-", "Abc"):
        assert route_problems(ServiceRoute(name)) != []
        with pytest.raises(ValueError):
            v1_files.check_service_name(name)


def test_envoy_admin_is_on_loopback_whatever_the_settings(tmp_path):
    from router.environment import RouterEnvironment

    in_cluster = RouterEnvironment(config_dir=str(tmp_path), tls_dir=str(tmp_path)).router_settings()
    assert (in_cluster.listen_host, in_cluster.admin_host, in_cluster.admin_port) == ("0.0.0.0", "127.0.0.1", 9901)
    with pytest.raises(TypeError):
        RouterSettings(config_dir=tmp_path, listen_port=1, admin_port=2, admin_host="0.0.0.0")  # not a setting at all


@pytest.mark.parametrize(
    ("cap", "routers", "share"),
    [(1, 1, 1), (10, 1, 10), (6, 3, 2), (4, 3, 1), (3, 3, 1), (1, 3, 1), (7, 2, 3)],
)
def test_each_router_enforces_its_share_of_the_per_replica_cap(cap, routers, share):
    """Rounded down: the routers together never exceed the cap, except that each lets at least one through."""
    route = replace(GOOD, max_concurrent=cap)
    assert route.concurrency_share(routers) == share
    assert share * routers <= cap or share == 1


def test_the_queues_of_all_routers_hold_what_one_service_wide_queue_would():
    route = ServiceRoute("m", max_concurrent=6, max_queue_wait_ms=500, latency_ms=10.0, endpoints=(GOOD.endpoints[0],))
    assert route.queue_capacity() == 300  # one router: 6 slots * 500 ms / 10 ms
    assert route.queue_capacity(routers=3) == 100  # each of 3 routers: its 2 slots' worth


def test_the_router_count_reaches_the_settings_from_the_environment(tmp_path):
    from router.environment import VARIABLES, RouterEnvironment

    environment = RouterEnvironment.from_environ({VARIABLES["router_replicas"]: "3", VARIABLES["config_dir"]: str(tmp_path)})
    assert environment.router_settings().router_replicas == 3
    assert {"name": "AKSINF_ROUTER_REPLICAS", "value": "3"} in environment.as_env()
    assert RouterEnvironment.from_environ({}).router_settings().router_replicas == 1  # absent (local mode): one router


def test_the_jwks_ca_bundle_is_a_setting(tmp_path):
    from router.environment import VARIABLES, RouterEnvironment

    environment = RouterEnvironment.from_environ(
        {VARIABLES["jwt_issuer"]: "https://issuer.example", VARIABLES["jwt_audience"]: "api://x", VARIABLES["jwks_uri"]: "https://issuer.example/keys",
         VARIABLES["jwks_ca_bundle"]: "/etc/aks-inference/ca.pem", VARIABLES["config_dir"]: str(tmp_path)}
    )
    assert environment.router_settings().jwt.jwks_ca_bundle == "/etc/aks-inference/ca.pem"
    assert {"name": "AKSINF_JWKS_CA_BUNDLE", "value": "/etc/aks-inference/ca.pem"} in environment.as_env()
    unset = RouterEnvironment(jwt_issuer="https://issuer.example", jwt_audience="api://x", jwks_uri="https://issuer.example/keys", config_dir=str(tmp_path))
    assert unset.router_settings().jwt.jwks_ca_bundle == SYSTEM_CA_BUNDLE
    assert "AKSINF_JWKS_CA_BUNDLE" not in {e["name"] for e in unset.as_env()}


TOKEN = ServiceRoute("scorer", auth="token")
RULE = "must be 1-256 printable characters without whitespace"


@pytest.mark.parametrize(
    ("rules", "problem"),
    [
        (TokenAuthorization(required_roles=("Model Score",)), f"token_authorization requiredRoles: 'Model Score' {RULE}"),
        (TokenAuthorization(required_roles=("",)), f"token_authorization requiredRoles: '' {RULE}"),
        (TokenAuthorization(allowed_client_ids=("a\x00b",)), f"token_authorization allowedClientIds: 'a\\x00b' {RULE}"),
        (TokenAuthorization(allowed_client_ids=("c",) * 33), "token_authorization allowedClientIds: 33 values, at most 32"),
        (TokenAuthorization(audience="x" * 257), f"token_authorization audience='{'x' * 76}... {RULE}"),
        (TokenAuthorization(audience="api://a\tb"), f"token_authorization audience='api://a\\tb' {RULE}"),
    ],
)
def test_token_rules_envoy_cannot_match_exactly_are_a_problem(rules, problem):
    assert route_problems(replace(TOKEN, token_authorization=rules)) == [problem]


@pytest.mark.parametrize("auth", ["key", "none", "Token"])
def test_token_rules_on_a_service_that_is_not_a_token_service_are_a_problem(auth):
    """Fail closed: rules the route would not enforce refuse it rather than serve it without them."""
    problems = route_problems(replace(TOKEN, auth=auth, token_authorization=TokenAuthorization(audience="api://own")))
    assert f"token_authorization is set but auth={auth!r}: roles, clients and audience apply to token auth only" in problems


def test_token_rules_within_bounds_have_no_problem_and_the_contract_keeps_the_same_bounds():
    from contract import v1_files

    rules = TokenAuthorization(("Model.Score", "a" * 120), ("00000000-0000-0000-0000-000000000001",) * MAX_TOKEN_CLAIM_VALUES, "x" * MAX_TOKEN_CLAIM_LENGTH)
    assert route_problems(replace(TOKEN, token_authorization=rules)) == []
    assert (v1_files.MAX_TOKEN_CLAIM_VALUES, v1_files.MAX_AUDIENCE_LENGTH) == (MAX_TOKEN_CLAIM_VALUES, MAX_TOKEN_CLAIM_LENGTH)


# --------------------------------------------------------------------------- the service time assumed before one is measured


def test_a_cold_service_queues_a_burst_that_can_start_within_its_wait_budget():
    """No estimate declared: the fast router-wide prior, so a burst on a 10 ms model (50 requests can start within
    500 ms on one slot) is queued whole, never met with 503 before the first measurement."""
    from router.spec import PRIOR_SERVICE_TIME_MS

    cold = ServiceRoute("m", max_queue_wait_ms=500, endpoints=(GOOD.endpoints[0],))
    assert cold.prior_service_time_ms == PRIOR_SERVICE_TIME_MS
    assert cold.queue_capacity() >= 500 // 10


def test_a_declared_estimate_sizes_the_queue_until_a_service_time_is_measured():
    declared = ServiceRoute("m", max_concurrent=2, max_queue_wait_ms=500, expected_service_time_ms=250, endpoints=GOOD.endpoints)
    assert declared.queue_capacity() == 8  # 2 replicas x 2 slots x 500 ms / 250 ms
    assert declared.queue_capacity(routers=2) == 4  # this router's share of the slots
    assert replace(declared, latency_ms=1000.0).queue_capacity() == 2  # measured: the estimate no longer counts
    assert replace(declared, latency_ms=10.0).queue_capacity() == 200


def test_a_slow_service_once_measured_queues_only_what_can_start_within_the_budget():
    """Whatever the prior admitted while cold, the measured service time alone sizes the queue: a 1 s model
    on one slot with maxQueueWaitMs 500 queues one request (Envoy's floor), not the prior's 500."""
    measured = ServiceRoute("m", max_queue_wait_ms=500, latency_ms=1000.0, endpoints=(GOOD.endpoints[0],))
    assert measured.queue_capacity() == 1
    assert replace(measured, latency_ms=None).queue_capacity() == 500


@pytest.mark.parametrize("expected", [0, -5, 60_001, True, 2.5, "100"])
def test_an_estimate_outside_1_to_the_scoring_timeout_is_a_problem(expected):
    route = replace(GOOD, scoring_timeout_ms=60_000, expected_service_time_ms=expected)
    assert route_problems(route) == [
        f"expected_service_time_ms={expected!r} must be a whole number of milliseconds from 1 to the scoring timeout (60000)"
    ]


@pytest.mark.parametrize("expected", [None, 1, 60_000])
def test_an_estimate_within_1_to_the_scoring_timeout_is_accepted(expected):
    assert route_problems(replace(GOOD, scoring_timeout_ms=60_000, expected_service_time_ms=expected)) == []


# --------------------------------------------------------------------------- versioned endpoints

V1 = ServiceRoute("v-one", endpoint="scorer", endpoints=(Endpoint("10.0.0.1", 5001),))
V2 = ServiceRoute("v-two", endpoint="scorer", endpoints=(Endpoint("10.0.0.2", 5001),))
SHADOW = ServiceRoute("v-shadow", endpoint="scorer")
ENDPOINT = EndpointRoute(
    "scorer",
    keys=("p" * 32,),
    versions=(VersionShare("v-one", 90, is_default=True, version_type="control"), VersionShare("v-two", 10), VersionShare("v-shadow", 0, 25)),
)
VERSIONS = {r.name: r for r in (V1, V2, SHADOW)}


def test_an_endpoint_whose_versions_can_serve_has_no_problem_and_the_bounds_are_the_contracts():
    from contract import endpoints

    assert endpoint_problems(ENDPOINT, VERSIONS) == []
    assert (MAX_ENDPOINT_VERSIONS, PERCENT) == (endpoints.MAX_VERSIONS, endpoints.PERCENT)


def _shares(*shares: VersionShare) -> dict:
    return {"versions": shares}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"name": "S"}, "name='S' is not a service name (3-32 lower-case letters, digits and dashes; a letter first, no dash last)"),
        ({"auth": "Key"}, "auth='Key' is not one of key, token, none (exactly, lower case)"),
        ({"keys": ("k" * 32, "k" * 32)}, "keys: the primary and secondary key are the same (Envoy rejects duplicate keys)"),
        ({"token_authorization": TokenAuthorization(audience="api://own")},
         "token_authorization is set but auth='key': roles, clients and audience apply to token auth only"),
        (_shares(), "versions: 0 versions; an endpoint has 1 to 6 (v1's AksEndpoint limit)"),
        (_shares(*(VersionShare(f"v-{i}00", 0) for i in range(6)), VersionShare("v-one", 100, is_default=True)),
         "versions: 7 versions; an endpoint has 1 to 6 (v1's AksEndpoint limit)"),
        (_shares(VersionShare("v-one", 90, is_default=True), VersionShare("v-two", 10, is_default=True)),
         "versions: 2 default versions (v-one, v-two); exactly one takes the traffic the others leave"),
        (_shares(VersionShare("v-one", 90), VersionShare("v-two", 10)), "versions: 0 default versions (none); exactly one takes the traffic the others leave"),
        (_shares(VersionShare("v-one", 80, is_default=True), VersionShare("v-two", 10)), "versions: the weights sum to 90, not 100 (the default takes the rest)"),
        (_shares(VersionShare("v-one", 150, is_default=True)), "versions[0] 'v-one': weight=150 must be a whole number from 0 to 100"),
        (_shares(VersionShare("v-one", 100, is_default=True), VersionShare("v-two", 0, True)),  # type: ignore[arg-type]
         "versions[1] 'v-two': mirror_percent=True must be a whole number from 0 to 100"),
        (_shares(VersionShare("v-one", 90, is_default=True), VersionShare("v-two", 10, 5)),
         "versions[1] 'v-two': a shadow (mirror_percent=5) answers no client: weight 0 and not the default"),
        (_shares(VersionShare("v-one", 100, is_default=True, version_type="canary")), "versions[0] 'v-one': version_type='canary' is not one of control, treatment"),
        (_shares(VersionShare("v-one", 100, is_default=True), VersionShare("v-one", 0)), "versions: version 'v-one' is listed 2 times"),
        (_shares(VersionShare("scorer", 100, is_default=True)),
         "versions[0] 'scorer' is not the service name of a version (3-32 lower-case letters, digits and dashes; not the endpoint's own name)"),
        (_shares(VersionShare("v-one", 90, is_default=True), VersionShare("v-gone", 10)), "versions[1] 'v-gone' answers 10% of requests but no such service was found"),
    ],
)
def test_every_endpoint_value_envoy_would_reject_or_v1_would_refuse_is_a_problem(change, problem):
    problems = endpoint_problems(replace(ENDPOINT, **change), {**VERSIONS, "scorer": V1})
    assert problem in problems, problems


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        (replace(V2, problems=("max_concurrent=0 must be ...",)), "the router refuses it (max_concurrent=0 must be ...)"),
        (replace(V2, namespace="other"), "it is in namespace 'other', not the endpoint's 'models'"),
        (replace(V2, endpoint=None), "it is not marked as a version of 'scorer' (its endpoint: None)"),
        (replace(V2, endpoint="another"), "it is not marked as a version of 'scorer' (its endpoint: 'another')"),
    ],
)
def test_a_version_answering_clients_that_cannot_serve_through_the_endpoint_refuses_it(version, reason):
    assert endpoint_problems(ENDPOINT, {**VERSIONS, "v-two": version}) == [f"versions[1] 'v-two' answers 10% of requests but {reason}"]


def test_a_shadow_or_idle_version_that_cannot_serve_is_left_out_without_refusing_the_endpoint():
    for versions in ({"v-one": V1, "v-two": V2}, {**VERSIONS, "v-shadow": replace(SHADOW, namespace="other")}):
        assert endpoint_problems(ENDPOINT, versions) == []
        assert [share.version for share, _ in served_versions(ENDPOINT, versions)] == ["v-one", "v-two"]
    assert [route for _, route in served_versions(ENDPOINT, VERSIONS)] == [V1, V2, SHADOW]


def test_a_version_marked_with_an_impossible_endpoint_is_refused():
    assert route_problems(replace(V1, endpoint="S/x")) == ["endpoint='S/x' is not the service name of another service (the endpoint this version belongs to)"]
    assert route_problems(replace(V1, endpoint="v-one")) != []


def test_an_endpoint_and_a_service_claiming_one_name_are_both_refused_and_other_endpoints_are_not():
    clash = ServiceRoute("scorer", auth="none")
    other = replace(ENDPOINT, name="other", versions=(VersionShare("v-gone", 100, is_default=True),))
    routes = refuse_unsafe([V1, V2, SHADOW, clash], [ENDPOINT, other])
    claimed = "service name 'scorer' is claimed by 2 services (namespaces models)"
    assert [r.problems for r in routes] == [(), (), (), (claimed,)]
    endpoints = refuse_unsafe_endpoints([ENDPOINT, other], routes)
    assert endpoints[0].problems == (claimed,)
    assert endpoints[1].problems == ("versions[0] 'v-gone' answers 100% of requests but no such service was found",)
    assert refuse_unsafe_endpoints(endpoints, routes) == endpoints  # checking twice changes nothing
    alone = refuse_unsafe_endpoints([ENDPOINT], refuse_unsafe([V1, V2, SHADOW], [ENDPOINT]))
    assert alone[0].problems == ()  # the bad endpoint and the clash never touched it


def test_two_endpoints_claiming_one_name_are_both_refused():
    twin = replace(ENDPOINT, namespace="vision")
    checked = refuse_unsafe_endpoints([ENDPOINT, twin], refuse_unsafe(VERSIONS.values(), [ENDPOINT, twin]))
    assert {p for e in checked for p in e.problems} >= {"service name 'scorer' is claimed by 2 services (namespaces models, vision)"}
    assert all(e.problems for e in checked)


def _weights(endpoint: EndpointRoute) -> dict[str, int]:
    return {v.version: v.weight for v in endpoint.versions}


def test_a_live_split_replaces_the_configured_shares_and_the_default_takes_the_rest():
    assert with_live_split(ENDPOINT, {}) == (ENDPOINT, None)
    live, reason = with_live_split(ENDPOINT, {"v-two": 25})
    assert reason is None and _weights(live) == {"v-one": 75, "v-two": 25, "v-shadow": 0}
    rolled_back, reason = with_live_split(ENDPOINT, {"v-one": 100, "v-two": 0})  # the canary's split names the control too
    assert reason is None and _weights(rolled_back) == {"v-one": 100, "v-two": 0, "v-shadow": 0}
    assert endpoint_problems(rolled_back, VERSIONS) == []
    assert [v.mirror_percent for v in live.versions] == [0, 0, 25]  # shadows keep mirroring


@pytest.mark.parametrize(
    ("split", "reason"),
    [
        ({"v-nine": 10}, "'v-nine' is not a version of 'scorer'"),
        ({"v-two": 101}, "'v-two'=101 is not a whole percent"),
        ({"v-two": True}, "'v-two'=True is not a whole percent"),
        ({"v-two": "10"}, "'v-two'='10' is not a whole percent"),
        ({"v-shadow": 10}, "'v-shadow' is a shadow: it answers no client"),
        ({"v-one": 50, "v-two": 10}, "the default 'v-one' takes the rest (90), not 50"),
    ],
)
def test_a_live_split_that_does_not_fit_is_ignored_with_its_reason(split, reason):
    endpoint, why = with_live_split(ENDPOINT, split)
    assert endpoint == ENDPOINT and why is not None and reason in why


def test_a_live_split_past_a_hundred_is_ignored():
    three = replace(ENDPOINT, versions=(*ENDPOINT.versions[:2], VersionShare("v-three", 0)))
    endpoint, why = with_live_split(three, {"v-two": 60, "v-three": 50})
    assert endpoint == three and "sum past 100" in why
