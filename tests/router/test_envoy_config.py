"""Pure Envoy rendering: what a route carries (timeouts, retries), without a process."""

from __future__ import annotations

from router.envoy_config import render_dynamic
from router.spec import Endpoint, RouterSettings, ServiceRoute

PRIMARY, SECONDARY = "p" * 32, "s" * 32


def _settings(tmp_path, **kwargs):
    return RouterSettings(config_dir=tmp_path, listen_port=18080, admin_port=19901, **kwargs)


def _routes():
    return [
        ServiceRoute("keyed", keys=(PRIMARY, SECONDARY), endpoints=(Endpoint("127.0.0.1", 5001), Endpoint("127.0.0.1", 5002))),
        ServiceRoute("tokened", auth="token", endpoints=(Endpoint("127.0.0.1", 5003),)),
        ServiceRoute("open", auth="none", scoring_timeout_ms=120_000, max_concurrent=4),
    ]


def test_routes_carry_the_service_timeout_and_safe_retries(tmp_path):
    routes = render_dynamic(_routes(), _settings(tmp_path))["rds.yaml"]["resources"][0]["virtual_hosts"][0]["routes"]
    by_name = {r["name"]: r for r in routes}
    assert by_name["open"]["route"]["timeout"] == "120.000s"  # never Envoy's 15 s default
    assert by_name["keyed"]["route"]["timeout"] == "60.000s"  # v1's default scoringTimeoutMs
    # A silent model is not cut by the 5-minute stream idle timeout before its own scoring timeout.
    long_running = render_dynamic([ServiceRoute("batch", scoring_timeout_ms=900_000)], _settings(tmp_path))
    assert long_running["rds.yaml"]["resources"][0]["virtual_hosts"][0]["routes"][1]["route"]["idle_timeout"] == "900.000s"
    assert by_name["keyed"]["route"]["retry_policy"]["retry_on"] == "connect-failure,refused-stream,reset-before-request"
    assert [r["name"] for r in routes][0] == "health" and routes[-1]["name"] == "unknown-service"
