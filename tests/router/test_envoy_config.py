"""Pure Envoy rendering without a process: what a route carries (timeouts, retries, auth per known value),
what a refused service renders, file versions, the request-id guard and the admin address."""

from __future__ import annotations

import pytest

from router.envoy_config import API_KEY_FILTER, JWT_FILTER, render_dynamic
from router.spec import Endpoint, JwtSettings, ServiceRoute
from tests.fixtures_router import PRIMARY, render_settings, sample_routes


def test_routes_carry_the_service_timeout_and_safe_retries(tmp_path):
    routes = render_dynamic(sample_routes(), render_settings(tmp_path))["rds.yaml"]["resources"][0]["virtual_hosts"][0]["routes"]
    by_name = {r["name"]: r for r in routes}
    assert by_name["open"]["route"]["timeout"] == "120.000s"  # never Envoy's 15 s default
    assert by_name["keyed"]["route"]["timeout"] == "60.000s"  # v1's default scoringTimeoutMs
    # A silent model is not cut by the 5-minute stream idle timeout before its own scoring timeout.
    long_running = render_dynamic([ServiceRoute("batch", scoring_timeout_ms=900_000)], render_settings(tmp_path))
    assert long_running["rds.yaml"]["resources"][0]["virtual_hosts"][0]["routes"][1]["route"]["idle_timeout"] == "900.000s"
    assert by_name["keyed"]["route"]["retry_policy"]["retry_on"] == "connect-failure,refused-stream,reset-before-request"
    assert [r["name"] for r in routes][0] == "health" and routes[-1]["name"] == "unknown-service"


def _by_name(files: dict) -> dict[str, dict]:
    return {r["name"]: r for r in files["rds.yaml"]["resources"][0]["virtual_hosts"][0]["routes"]}


def _clusters(files: dict) -> list[str]:
    return [c["name"] for c in files["cds.yaml"]["resources"]]


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
        "body": {"inline_string": "This service's settings are invalid, so the router does not serve it: max_concurrent=4294967296 must be a whole number from 1 to 2147483647"},
    }
    assert "Not/A/Name" not in _by_name(files)  # a name that cannot be a URL segment gets no route at all
    assert _clusters(files) == ["model-models-keyed", "model-models-open", "model-models-tokened"]


def test_every_file_carries_the_version_of_its_resources(tmp_path):
    files = render_dynamic(sample_routes(), render_settings(tmp_path))
    other = render_dynamic(sample_routes()[:1], render_settings(tmp_path))
    assert all(len(doc["version_info"]) == 16 for doc in files.values())
    assert files["cds.yaml"]["version_info"] != other["cds.yaml"]["version_info"]
    assert files["lds.yaml"]["version_info"] == other["lds.yaml"]["version_info"]


def test_the_request_id_guard_runs_first_and_keeps_only_uuids(tmp_path):
    listener = render_dynamic(sample_routes(), render_settings(tmp_path))["lds.yaml"]["resources"][0]
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
