"""Versioned endpoints through the real Envoy on 127.0.0.1, with FakeModel stand-ins as the versions' replicas:
the weighted split lands where it should, a pinned version is reached alone and only with the endpoint's key,
and a shadow that is slow or failing changes nothing for the caller while it receives every copy with the
caller's request id. One Envoy serves the whole module."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from local.envoy_process import EnvoyProcess
from local.net import LOOPBACK, free_port
from router.envoy_config import render_dynamic
from router.envoy_files import ConfigWriter, validate_config
from router.spec import (
    VERSION_HEADER,
    EndpointRoute,
    JwtSettings,
    RouterSettings,
    ServiceRoute,
    VersionShare,
)
from tests.fixtures_router import PRIMARY, FakeModel, render_settings, with_endpoints

REQUESTS = 10_000
CLIENTS = 4
SHADOW_DELAY_S = 2.0

SPLIT = EndpointRoute(
    "split", keys=(PRIMARY,), versions=(VersionShare("split-a", 90, is_default=True, version_type="control"), VersionShare("split-b", 10))
)
MIRRORED = EndpointRoute(
    "mirrored",
    auth="none",
    versions=(VersionShare("mirror-main", 100, is_default=True, version_type="control"), VersionShare("mirror-slow", 0, 100), VersionShare("mirror-fail", 0, 100)),
)
UNMIRRORED = EndpointRoute("unmirrored", auth="none", versions=(VersionShare("plain-main", 100, is_default=True, version_type="control"),))


def _version(name: str, endpoint: EndpointRoute, model: FakeModel, **kwargs) -> ServiceRoute:
    # Many requests at once per replica: the stand-ins are fast, and the test measures routing, not the cap.
    return with_endpoints(ServiceRoute(name, auth=endpoint.auth, endpoint=endpoint.name, max_concurrent=64, **kwargs), model)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    models = {
        "split-a": FakeModel(), "split-b": FakeModel(), "mirror-main": FakeModel(), "plain-main": FakeModel(),
        "mirror-slow": FakeModel(delay=SHADOW_DELAY_S), "mirror-fail": FakeModel(status=500),
    }
    for model in models.values():
        model.start()
    owner = {v.version: e for e in (SPLIT, MIRRORED, UNMIRRORED) for v in e.versions}
    routes = [_version(name, owner[name], model) for name, model in models.items()]
    config_dir = tmp_path_factory.mktemp("endpoints-envoy")
    settings = RouterSettings(config_dir=config_dir, listen_port=free_port(), admin_port=free_port(), access_log_path=str(config_dir / "access.log"))
    writer = ConfigWriter(config_dir)
    writer.write(routes, settings, [SPLIT, MIRRORED, UNMIRRORED])
    envoy = EnvoyProcess(writer.write_bootstrap(settings), settings.admin_port).start()
    yield settings, models
    envoy.stop()
    for model in models.values():
        model.stop()


def _post(connection: http.client.HTTPConnection, endpoint: str, headers: dict[str, str]) -> tuple[int, str | None, float]:
    started = time.perf_counter()
    connection.request("POST", f"/api/v1/service/{endpoint}/score", body=b'{"data": [1]}', headers={"Content-Type": "application/json", **headers})
    response = connection.getresponse()
    response.read()
    return response.status, response.getheader(VERSION_HEADER), time.perf_counter() - started


def _calls(settings: RouterSettings, endpoint: str, count: int, headers: dict[str, str] | None = None) -> list[tuple[int, str | None, float]]:
    """`count` requests on one keep-alive connection."""
    connection = http.client.HTTPConnection(LOOPBACK, settings.listen_port, timeout=10)
    try:
        return [_post(connection, endpoint, headers or {}) for _ in range(count)]
    finally:
        connection.close()


def _header(request: dict, name: str) -> str | None:
    return next((value for key, value in request["headers"].items() if key.lower() == name), None)


def test_ten_thousand_requests_at_90_10_land_within_two_percent_per_version(served):
    settings, models = served
    before = {name: len(models[name].requests) for name in ("split-a", "split-b")}
    key = {"Authorization": f"Bearer {PRIMARY}"}
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = [a for batch in pool.map(lambda _: _calls(settings, "split", REQUESTS // CLIENTS, key), range(CLIENTS)) for a in batch]
    assert Counter(status for status, _, _ in answers) == {200: REQUESTS}
    by_header = Counter(version for _, version, _ in answers)
    by_model = {name: len(models[name].requests) - before[name] for name in before}
    assert by_header == by_model  # each answer names the version whose replica served it
    assert abs(by_model["split-b"] - 0.10 * REQUESTS) <= 0.02 * REQUESTS, by_model
    assert abs(by_model["split-a"] - 0.90 * REQUESTS) <= 0.02 * REQUESTS, by_model  # the default catches the rest


def test_a_pinned_version_is_reached_alone_and_only_with_the_endpoints_key(served):
    settings, models = served
    before = {name: len(models[name].requests) for name in ("split-a", "split-b")}
    request_id = str(uuid.uuid4())
    pinned = _calls(settings, "split", 50, {VERSION_HEADER: "split-b", "Authorization": f"Bearer {PRIMARY}", "x-request-id": request_id})
    assert {(status, version) for status, version, _ in pinned} == {(200, "split-b")}
    assert {name: len(models[name].requests) - before[name] for name in before} == {"split-a": 0, "split-b": 50}
    [(unauthenticated, _, _)] = _calls(settings, "split", 1, {VERSION_HEADER: "split-b"})
    [(wrong_key, _, _)] = _calls(settings, "split", 1, {VERSION_HEADER: "split-b", "Authorization": "Bearer " + "x" * 32})
    [(unknown, _, _)] = _calls(settings, "split", 1, {VERSION_HEADER: "split-c", "Authorization": f"Bearer {PRIMARY}"})
    assert (unauthenticated, wrong_key, unknown) == (401, 401, 404)
    assert len(models["split-b"].requests) - before["split-b"] == 50  # no refused request reached the version
    deadline = time.monotonic() + 5  # the access log names the version that answered (flushed every 500 ms)
    while time.monotonic() < deadline and len(_logged(settings, request_id)) < 50:
        time.sleep(0.1)
    assert _logged(settings, request_id) == ["split-b"] * 50


def _logged(settings: RouterSettings, request_id: str) -> list[str]:
    """The `version` of every access log line of `request_id`."""
    path = Path(settings.access_log_path)
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")] if path.exists() else []
    return [line["version"] for line in lines if line["request_id"] == request_id]


def _p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def test_a_slow_and_a_failing_shadow_change_nothing_for_the_caller_and_get_every_copy(served):
    settings, models = served
    fail_before = len(models["mirror-fail"].requests)
    slow_before = len(models["mirror-slow"].requests)
    ids = [str(uuid.uuid4()) for _ in range(100)]
    connection = http.client.HTTPConnection(LOOPBACK, settings.listen_port, timeout=10)
    try:
        mirrored = [_post(connection, "mirrored", {"x-request-id": request_id}) for request_id in ids]
    finally:
        connection.close()
    unmirrored = _calls(settings, "unmirrored", len(ids))
    assert {(status, version) for status, version, _ in mirrored} == {(200, "mirror-main")}  # the shadows' 500 and 2 s never reach it
    mirrored_p99, plain_p99 = _p99([s for _, _, s in mirrored]), _p99([s for _, _, s in unmirrored])
    # Generous: a caller that waited for the shadow would take 2 s or more.
    assert mirrored_p99 < 0.5 and mirrored_p99 < plain_p99 + 0.4, (mirrored_p99, plain_p99)
    deadline = time.monotonic() + 5  # copies are sent alongside, not before the answer: let the last ones arrive
    while time.monotonic() < deadline and (len(models["mirror-fail"].requests) - fail_before < len(ids) or len(models["mirror-slow"].requests) - slow_before < len(ids)):
        time.sleep(0.05)
    for name, before in (("mirror-fail", fail_before), ("mirror-slow", slow_before)):
        copies = models[name].requests[before:]
        assert sorted(_header(r, "x-request-id") for r in copies) == sorted(ids), name  # every copy, joined to its caller by id
    main_ids = {_header(r, "x-request-id") for r in models["mirror-main"].requests}
    assert set(ids) <= main_ids


@pytest.mark.parametrize("auth", ["key", "token", "none"])
def test_every_endpoint_render_passes_envoy_validate(tmp_path, auth):
    jwt = JwtSettings("https://login.example/tenant/v2.0", ("api://scoring",), jwks_uri="https://login.microsoftonline.com/t/discovery/v2.0/keys")
    settings = render_settings(tmp_path, jwt=jwt)
    endpoint = EndpointRoute(
        "scorer", auth=auth, keys=(PRIMARY,) if auth == "key" else (),
        versions=(VersionShare("v-one", 80, is_default=True, version_type="control"), VersionShare("v-two", 20), VersionShare("v-three", 0, 10)),
    )
    routes = [ServiceRoute(name, auth=auth, endpoint="scorer", endpoints=()) for name in ("v-one", "v-two", "v-three")]
    files = render_dynamic([*routes, ServiceRoute("plain", auth="none")], settings, [endpoint])
    validate_config(files, settings)
