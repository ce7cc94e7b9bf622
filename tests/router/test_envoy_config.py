"""Pure Envoy rendering without a process: what a route carries (timeouts, retries, auth per known value),
what a refused service renders, file versions, the request-id guard and the admin address; an endpoint's
pin, weighted and mirrored routes behind its auth, and what a refused endpoint renders."""

from __future__ import annotations

from dataclasses import replace

import pytest

from router.envoy_config import API_KEY_FILTER, JWT_FILTER, RBAC_FILTER, render_dynamic
from router.spec import (
    SYSTEM_CA_BUNDLE,
    VERSION_HEADER,
    Endpoint,
    EndpointRoute,
    JwtSettings,
    ServiceRoute,
    TokenAuthorization,
    VersionShare,
)
from tests.fixtures_router import PRIMARY, render_settings, sample_routes


def test_routes_carry_the_service_timeout_and_safe_retries(tmp_path):
    routes = render_dynamic(sample_routes(), render_settings(tmp_path))["rds.pb"]["resources"][0]["virtual_hosts"][0]["routes"]
    by_name = {r["name"]: r for r in routes}
    assert by_name["open"]["route"]["timeout"] == "120.000s"  # never Envoy's 15 s default
    assert by_name["keyed"]["route"]["timeout"] == "60.000s"  # v1's default scoringTimeoutMs
    # A silent model is not cut by the 5-minute stream idle timeout before its own scoring timeout.
    long_running = render_dynamic([ServiceRoute("batch", scoring_timeout_ms=900_000)], render_settings(tmp_path))
    assert long_running["rds.pb"]["resources"][0]["virtual_hosts"][0]["routes"][1]["route"]["idle_timeout"] == "900.000s"
    assert by_name["keyed"]["route"]["retry_policy"]["retry_on"] == "connect-failure,refused-stream,reset-before-request"
    assert [r["name"] for r in routes][0] == "health" and routes[-1]["name"] == "unknown-service"


def _by_name(files: dict) -> dict[str, dict]:
    return {r["name"]: r for r in files["rds.pb"]["resources"][0]["virtual_hosts"][0]["routes"]}


def _clusters(files: dict) -> list[str]:
    return [c["name"] for c in files["cds.pb"]["resources"]]


@pytest.mark.parametrize("auth", ["Key", "NONE", "", "none "])
def test_an_unknown_auth_renders_a_route_that_refuses_every_request(tmp_path, auth):
    files = render_dynamic([ServiceRoute("odd", auth=auth, keys=(PRIMARY,), endpoints=(Endpoint("127.0.0.1", 5001),))], render_settings(tmp_path))
    route = _by_name(files)["odd"]
    assert "route" not in route and route["direct_response"]["status"] == 403
    assert route["direct_response"]["body"]["inline_string"] == (
        f"This service's auth setting is invalid, so the router refuses every request: auth={auth!r} is not one of key, token, none (exactly, lower case)"
    )
    assert _clusters(files) == []  # no cluster: nothing could ever forward to the model


def test_each_known_auth_renders_its_own_filters(tmp_path):
    settings = render_settings(tmp_path, jwt=JwtSettings("https://issuer.example", ("api://x",), local_jwks_path="/dev/null"))
    routes = _by_name(render_dynamic(sample_routes(), settings))
    keyed, tokened, opened = (routes[n]["typed_per_filter_config"] for n in ("keyed", "tokened", "open"))
    assert [c["client"] for c in keyed[API_KEY_FILTER]["credentials"]] == ["keyed-primary", "keyed-secondary"] and keyed[JWT_FILTER]["disabled"]
    assert tokened[API_KEY_FILTER]["disabled"] and tokened[JWT_FILTER]["requirement_name"] == "entra"
    assert opened[API_KEY_FILTER]["disabled"] and opened[JWT_FILTER]["disabled"]


def test_a_refused_service_renders_a_503_naming_its_problems_and_no_cluster(tmp_path):
    bad = ServiceRoute("bad", auth="none", max_concurrent=2**32, endpoints=(Endpoint("10.0.0.1", 5001),))
    nameless = ServiceRoute("Not/A/Name", auth="none")
    files = render_dynamic([*sample_routes(), bad, nameless], render_settings(tmp_path))
    refusal = _by_name(files)["bad"]["direct_response"]
    assert refusal == {
        "status": 503,
        "body": {"inline_string": "The router does not serve this service: max_concurrent=4294967296 must be a whole number from 1 to 2147483647"},
    }
    assert "Not/A/Name" not in _by_name(files)  # a name that cannot be a URL segment gets no route at all
    assert _clusters(files) == ["model-models-keyed", "model-models-open", "model-models-tokened"]


def test_every_file_carries_the_version_of_its_resources(tmp_path):
    files = render_dynamic(sample_routes(), render_settings(tmp_path))
    other = render_dynamic(sample_routes()[:1], render_settings(tmp_path))
    assert all(len(doc["version_info"]) == 16 for doc in files.values())
    assert files["cds.pb"]["version_info"] != other["cds.pb"]["version_info"]
    assert files["lds.json"]["version_info"] == other["lds.json"]["version_info"]


def test_the_request_id_guard_runs_first_and_keeps_only_uuids(tmp_path):
    listener = render_dynamic(sample_routes(), render_settings(tmp_path))["lds.json"]["resources"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    guard = hcm["http_filters"][0]["typed_config"]
    assert guard["extension_config"]["name"] == "envoy.filters.http.header_mutation"
    predicate = guard["xds_matcher"]["matcher_list"]["matchers"][0]["predicate"]["single_predicate"]
    assert predicate["input"]["typed_config"]["header_name"] == "x-request-id"
    assert hcm["request_id_extension"]["typed_config"]["pack_trace_reason"] is False


def test_envoy_admin_binds_loopback_in_the_cluster_too(tmp_path):
    from router.environment import RouterEnvironment
    from router.envoy_config import render_bootstrap

    settings = RouterEnvironment(config_dir=str(tmp_path), tls_dir=str(tmp_path)).router_settings()
    assert render_bootstrap(settings)["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9901}


def _cluster_named(files: dict, name: str) -> dict:
    return next(c for c in files["cds.pb"]["resources"] if c["name"] == name)


def test_each_router_replica_enforces_its_share_of_a_services_limits(tmp_path):
    route = ServiceRoute("shared", auth="none", max_concurrent=6, latency_ms=10.0, endpoints=(Endpoint("127.0.0.1", 5001),))
    alone = _cluster_named(render_dynamic([route], render_settings(tmp_path)), route.cluster_name)["circuit_breakers"]
    of_three = _cluster_named(render_dynamic([route], render_settings(tmp_path, router_replicas=3)), route.cluster_name)["circuit_breakers"]
    assert (alone["per_host_thresholds"][0]["max_connections"], alone["thresholds"][0]["max_pending_requests"]) == (6, 300)
    assert (of_three["per_host_thresholds"][0]["max_connections"], of_three["thresholds"][0]["max_pending_requests"]) == (2, 100)


def test_a_replica_envoy_cannot_reach_is_ejected_and_a_models_own_errors_never_eject_it(tmp_path):
    detection = _cluster_named(render_dynamic(sample_routes(), render_settings(tmp_path)), "model-models-keyed")["outlier_detection"]
    assert detection["split_external_local_origin_errors"] is True
    assert (detection["consecutive_local_origin_failure"], detection["enforcing_consecutive_local_origin_failure"]) == (2, 100)
    assert detection["enforcing_consecutive_5xx"] == detection["enforcing_consecutive_gateway_failure"] == detection["enforcing_success_rate"] == 0


def test_the_body_is_buffered_after_authentication_and_must_arrive_in_time(tmp_path):
    settings = render_settings(tmp_path, max_request_bytes=4096, request_timeout_ms=2500)
    hcm = render_dynamic(sample_routes(), settings)["lds.json"]["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in hcm["http_filters"]]
    assert names[-2:] == ["envoy.filters.http.buffer", "envoy.filters.http.router"]
    assert names.index("envoy.filters.http.api_key_auth") < names.index("envoy.filters.http.buffer")
    assert hcm["http_filters"][-2]["typed_config"]["max_request_bytes"] == 4096
    assert hcm["request_timeout"] == "2.500s"


def test_with_a_heap_budget_envoy_refuses_new_requests_near_it(tmp_path):
    from router.envoy_config import HEAP_REFUSE_FRACTION, render_bootstrap

    unbounded = render_bootstrap(render_settings(tmp_path))["overload_manager"]
    assert "actions" not in unbounded  # local mode: no budget
    bounded = render_bootstrap(render_settings(tmp_path, max_heap_bytes=768 * 2**20))["overload_manager"]
    [heap] = [m for m in bounded["resource_monitors"] if m["name"] == "envoy.resource_monitors.fixed_heap"]
    assert heap["typed_config"]["max_heap_size_bytes"] == 768 * 2**20
    assert bounded["actions"] == [
        {"name": "envoy.overload_actions.stop_accepting_requests",
         "triggers": [{"name": "envoy.resource_monitors.fixed_heap", "threshold": {"value": HEAP_REFUSE_FRACTION}}]}
    ]


# --------------------------------------------------------------------------- token auth


def _jwt_filter(files: dict) -> dict:
    hcm = files["lds.json"]["resources"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return next(f["typed_config"] for f in hcm["http_filters"] if f["name"] == JWT_FILTER)


@pytest.mark.parametrize(
    ("uri", "san", "sni"),
    [
        ("https://login.microsoftonline.com/t/discovery/v2.0/keys", {"san_type": "DNS", "matcher": {"exact": "login.microsoftonline.com"}}, "login.microsoftonline.com"),
        ("https://127.0.0.1:8443/t/discovery/v2.0/keys", {"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}}, None),
    ],
)
def test_the_jwks_host_certificate_is_validated_against_the_ca_bundle_and_its_name(tmp_path, uri, san, sni):
    files = render_dynamic(sample_routes(), render_settings(tmp_path, jwt=JwtSettings("https://issuer.example", ("api://x",), jwks_uri=uri)))
    jwks = next(c for c in files["cds.pb"]["resources"] if c["name"] == "jwks")
    tls = jwks["transport_socket"]["typed_config"]
    assert tls["common_tls_context"]["validation_context"] == {
        "trusted_ca": {"filename": SYSTEM_CA_BUNDLE},  # the system bundle unless told otherwise
        "match_typed_subject_alt_names": [san],
    }
    assert tls.get("sni") == sni  # never an address as SNI


def test_a_token_service_with_rules_gets_its_audience_requirement_and_an_rbac_policy(tmp_path):
    rules = TokenAuthorization(required_roles=("Model.Score",), allowed_client_ids=("00000000-0000-0000-0000-000000000001",), audience="api://own")
    routes = [*sample_routes(), ServiceRoute("ruled", auth="token", token_authorization=rules, endpoints=(Endpoint("127.0.0.1", 5004),))]
    files = render_dynamic(routes, render_settings(tmp_path, jwt=JwtSettings("https://issuer.example", ("api://x",), local_jwks_path="/dev/null")))
    jwt = _jwt_filter(files)
    assert jwt["providers"]["entra"]["payload_in_metadata"] == "jwt_payload"
    assert jwt["requirement_map"] == {
        "entra": {"provider_name": "entra"},
        "entra-audience:api://own": {"provider_and_audiences": {"provider_name": "entra", "audiences": ["api://own"]}},
    }
    by_name = _by_name(files)
    ruled, plain = by_name["ruled"]["typed_per_filter_config"], by_name["tokened"]["typed_per_filter_config"]
    assert ruled[JWT_FILTER]["requirement_name"] == "entra-audience:api://own"
    policy = ruled[RBAC_FILTER]["rbac"]["rules"]["policies"]["token-authorization"]
    role, clients = policy["principals"][0]["and_ids"]["ids"]
    assert role["metadata"] == {
        "filter": JWT_FILTER,
        "path": [{"key": "jwt_payload"}, {"key": "roles"}],
        "value": {"list_match": {"one_of": {"string_match": {"exact": "Model.Score"}}}},
    }
    assert [c["metadata"]["path"][1]["key"] for c in clients["or_ids"]["ids"]] == ["azp", "appid"]
    assert RBAC_FILTER not in plain and plain[JWT_FILTER]["requirement_name"] == "entra"  # no rules: any valid token


def test_rules_on_a_service_that_is_not_a_token_service_refuse_it(tmp_path):
    route = ServiceRoute("keyed", keys=(PRIMARY,), token_authorization=TokenAuthorization(required_roles=("Model.Score",)))
    files = render_dynamic([route], render_settings(tmp_path, jwt=JwtSettings("https://issuer.example", ("api://x",), local_jwks_path="/dev/null")))
    refusal = _by_name(files)["keyed"]["direct_response"]
    assert refusal["status"] == 503 and "token_authorization is set but auth='key'" in refusal["body"]["inline_string"]
    assert list(_jwt_filter(files)["requirement_map"]) == ["entra"]


# --------------------------------------------------------------------------- versioned endpoints

CONTROL = ServiceRoute("v-one", endpoint="scorer", scoring_timeout_ms=5_000, endpoints=(Endpoint("127.0.0.1", 5101),))
CANARY = ServiceRoute("v-two", endpoint="scorer", scoring_timeout_ms=90_000, endpoints=(Endpoint("127.0.0.1", 5102),))
SHADOW = ServiceRoute("v-three", endpoint="scorer", endpoints=(Endpoint("127.0.0.1", 5103),))
SCORER = EndpointRoute(
    "scorer",
    keys=(PRIMARY,),
    versions=(VersionShare("v-one", 90, is_default=True, version_type="control"), VersionShare("v-two", 10), VersionShare("v-three", 0, 25)),
)
JWT = JwtSettings("https://issuer.example", ("api://x",), local_jwks_path="/dev/null")


def _routes_of(files: dict, name: str) -> list[dict]:
    return [r for r in files["rds.pb"]["resources"][0]["virtual_hosts"][0]["routes"] if r["name"] == name]


def _pin(route: dict) -> str | None:
    headers = route["match"].get("headers", [{}])
    return headers[0].get("string_match", {}).get("exact")


def test_an_endpoint_pins_first_then_spreads_by_weight_and_mirrors_its_shadow(tmp_path):
    files = render_dynamic([*sample_routes(), CONTROL, CANARY, SHADOW], render_settings(tmp_path), [SCORER])
    *pins, unknown, weighted = _routes_of(files, "scorer")
    assert [_pin(r) for r in pins] == ["v-one", "v-two", "v-three"]  # a shadow can be tested too
    assert [r["route"]["cluster"] for r in pins] == ["model-models-v-one", "model-models-v-two", "model-models-v-three"]
    assert [r["route"]["timeout"] for r in pins] == ["5.000s", "90.000s", "60.000s"]  # each version's own scoring timeout
    assert [r["response_headers_to_add"][0]["header"] for r in pins] == [{"key": VERSION_HEADER, "value": v} for v in ("v-one", "v-two", "v-three")]
    assert unknown["match"]["headers"] == [{"name": VERSION_HEADER, "present_match": True}] and unknown["direct_response"]["status"] == 404
    action = weighted["route"]
    assert weighted["match"] == {"prefix": "/api/v1/service/scorer/"} and "cluster" not in action
    assert [(c["name"], c["weight"], c["response_headers_to_add"][0]["header"]["value"]) for c in action["weighted_clusters"]["clusters"]] == [
        ("model-models-v-one", 90, "v-one"), ("model-models-v-two", 10, "v-two")]
    assert action["timeout"] == "90.000s"  # one timeout per route: the largest of the answering versions'
    assert action["request_mirror_policies"] == [
        {"cluster": "model-models-v-three", "runtime_fraction": {"default_value": {"numerator": 25, "denominator": "HUNDRED"}}}]
    plain = _by_name(files)["keyed"]["route"]
    assert action["retry_policy"] == plain["retry_policy"] and action["prefix_rewrite"] == plain["prefix_rewrite"]


def test_versions_get_their_clusters_and_no_route_of_their_own(tmp_path):
    orphan = ServiceRoute("v-orphan", endpoint="absent", endpoints=(Endpoint("127.0.0.1", 5104),))
    files = render_dynamic([CONTROL, CANARY, SHADOW, orphan], render_settings(tmp_path), [SCORER])
    assert _clusters(files) == ["model-models-v-one", "model-models-v-orphan", "model-models-v-three", "model-models-v-two"]
    names = {r["name"] for r in files["rds.pb"]["resources"][0]["virtual_hosts"][0]["routes"]}
    assert names == {"health", "scorer", "unknown-service"}  # no /v-one/ ... prefix, nothing for the orphan's absent endpoint


@pytest.mark.parametrize("auth", ["key", "token", "none"])
def test_a_pinned_version_is_behind_the_endpoints_auth_exactly_as_its_weighted_route(tmp_path, auth):
    endpoint = replace(SCORER, auth=auth, keys=(PRIMARY,) if auth == "key" else ())
    files = render_dynamic([CONTROL, CANARY, SHADOW], render_settings(tmp_path, jwt=JWT), [endpoint])
    routes = _routes_of(files, "scorer")
    assert len(routes) == 5 and all(r["typed_per_filter_config"] == routes[-1]["typed_per_filter_config"] for r in routes)
    config = routes[-1]["typed_per_filter_config"]
    if auth == "key":
        assert config[API_KEY_FILTER]["credentials"] == [{"key": PRIMARY, "client": "scorer-primary"}] and config[JWT_FILTER]["disabled"]
    elif auth == "token":
        assert config[API_KEY_FILTER]["disabled"] and config[JWT_FILTER]["requirement_name"] == "entra"
    else:
        assert config[API_KEY_FILTER]["disabled"] and config[JWT_FILTER]["disabled"]


def test_a_token_endpoint_with_its_own_audience_gets_its_requirement(tmp_path):
    endpoint = replace(SCORER, auth="token", keys=(), token_authorization=TokenAuthorization(audience="api://scorer"))
    files = render_dynamic([CONTROL, CANARY, SHADOW], render_settings(tmp_path, jwt=JWT), [endpoint])
    assert "entra-audience:api://scorer" in _jwt_filter(files)["requirement_map"]
    assert {r["typed_per_filter_config"][JWT_FILTER]["requirement_name"] for r in _routes_of(files, "scorer")} == {"entra-audience:api://scorer"}


def test_a_refused_endpoint_renders_the_refused_service_answer_and_the_rest_is_served(tmp_path):
    broken = replace(SCORER, versions=(*SCORER.versions[:2], VersionShare("v-gone", 5)))
    files = render_dynamic([*sample_routes(), CONTROL, CANARY, SHADOW], render_settings(tmp_path), [broken])
    [refusal] = _routes_of(files, "scorer")
    assert refusal["direct_response"] == {
        "status": 503,
        "body": {"inline_string": "The router does not serve this service: versions[2] 'v-gone' answers 5% of requests but no such service was found; "
                                  "versions: the weights sum to 105, not 100 (the default takes the rest)"},
    }
    assert "model-models-v-two" in _clusters(files) and _by_name(files)["keyed"]["route"]["cluster"] == "model-models-keyed"


def test_an_endpoint_and_a_service_claiming_one_name_are_both_refused(tmp_path):
    files = render_dynamic([ServiceRoute("scorer", auth="none"), CONTROL, CANARY, SHADOW], render_settings(tmp_path), [SCORER])
    routes = _routes_of(files, "scorer")
    assert [r["direct_response"]["status"] for r in routes] == [503, 503]
    assert "model-models-scorer" not in _clusters(files)


def test_a_missing_shadow_is_simply_not_mirrored(tmp_path):
    files = render_dynamic([CONTROL, CANARY], render_settings(tmp_path), [SCORER])
    *pins, _, weighted = _routes_of(files, "scorer")
    assert [_pin(r) for r in pins] == ["v-one", "v-two"] and "request_mirror_policies" not in weighted["route"]


def test_the_endpoint_order_given_changes_nothing(tmp_path):
    other = replace(SCORER, name="another", versions=(VersionShare("v-one", 100, is_default=True),))
    settings = render_settings(tmp_path)
    assert render_dynamic([CONTROL, CANARY, SHADOW], settings, [SCORER, other]) == render_dynamic([SHADOW, CANARY, CONTROL], settings, [other, SCORER])
