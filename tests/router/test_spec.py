"""The gate in front of Envoy's shared files: every value a service carries is checked before it is rendered."""

from __future__ import annotations

from dataclasses import replace

import pytest

from router.spec import (
    INT32_MAX,
    MAX_TOKEN_CLAIM_LENGTH,
    MAX_TOKEN_CLAIM_VALUES,
    SYSTEM_CA_BUNDLE,
    UINT32_MAX,
    Endpoint,
    RouterSettings,
    ServiceRoute,
    TokenAuthorization,
    refuse_unsafe,
    route_problems,
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
