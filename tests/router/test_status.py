"""The status server in front of a fake Envoy admin API, on 127.0.0.1: what peers, probes and Prometheus
may read, and nothing else; and the readiness decision."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry, Counter

from router.envoy_files import ConfigWriter
from router.metrics import Load
from router.spec import RouterSettings, ServiceRoute
from router.status import StatusServer, Subscription, config_problems


@dataclass
class FakeEnvoy:
    """EnvoyAdmin; `served` overrides the version a file is served at (default: as written)."""

    writer: ConfigWriter
    live: bool = True
    answering: bool = True
    own_load: dict[str, Load] = field(default_factory=lambda: {"model-models-a": Load(2, 1, 1, 40.0)})
    served: dict[str, Subscription] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if not self.answering:
            raise ConnectionRefusedError("127.0.0.1:9901")

    def ready(self) -> bool:
        self._call("ready")
        return self.live

    def load(self) -> dict[str, Load]:
        self._call("load")
        return self.own_load

    def subscriptions(self) -> dict[str, Subscription]:
        self._call("subscriptions")
        return {file: self.served.get(file, Subscription(version, 0)) for file, version in self.writer.versions.items()}


@pytest.fixture
def status(tmp_path):
    writer = ConfigWriter(tmp_path)
    registry = CollectorRegistry()
    Counter("aksinf_example", "An example series", registry=registry).inc()
    envoy = FakeEnvoy(writer)
    server = StatusServer(("127.0.0.1", 0), registry, envoy, writer).start()
    yield server
    server.stop()


def request(server: StatusServer, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def write_config(server: StatusServer) -> None:
    server.writer.write([ServiceRoute("alpha", auth="none")], RouterSettings(config_dir=server.writer.config_dir, listen_port=1, admin_port=2))


def test_metrics_serve_the_registry(status):
    code, headers, body = request(status, "GET", "/metrics")
    assert code == 200 and headers["content-type"].startswith("text/plain") and b"aksinf_example_total 1.0" in body


def test_load_serves_this_replicas_envoy_gauges_and_503_when_envoy_does_not_answer(status):
    code, _, body = request(status, "GET", "/load")
    assert code == 200 and json.loads(body) == {"clusters": {"model-models-a": {
        "active": 2.0, "pending": 1.0, "latency_ms": 40.0, "started": 0.0, "server_errors": 0.0, "latency_buckets": []}}}
    status.envoy.answering = False
    code, _, body = request(status, "GET", "/load")
    assert code == 503 and "does not answer" in json.loads(body)["error"]


def test_ready_only_when_envoy_is_ready_and_serves_every_file_as_written(status):
    code, _, body = request(status, "GET", "/ready")
    assert (code, json.loads(body)) == (503, {"ready": False, "reasons": ["the control plane has not written Envoy's config yet"]})
    write_config(status)
    assert request(status, "GET", "/ready")[:1] == (200,)
    assert json.loads(request(status, "GET", "/ready")[2]) == {"ready": True}

    status.envoy.served = {"cds.pb": Subscription("0123456789abcdef", 2)}  # Envoy kept the previous clusters
    code, _, body = request(status, "GET", "/ready")
    version = status.writer.versions["cds.pb"]
    assert code == 503 and json.loads(body)["reasons"] == [
        f"Envoy rejected cds.pb (it serves version 0123456789abcdef, the file holds {version}; 2 update(s) rejected, Envoy's log says why)"
    ]
    status.envoy.served = {}
    status.envoy.live = False
    assert json.loads(request(status, "GET", "/ready")[2])["reasons"] == ["Envoy is not ready (its admin /ready is not 200)"]
    status.envoy.answering = False
    assert json.loads(request(status, "GET", "/ready")[2])["reasons"][0].startswith("Envoy's admin API does not answer")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_nothing_but_get_is_allowed(status, method):
    for path in ("/ready", "/quitquitquit", "/logging?http=debug", "/healthcheck/fail"):
        code, headers, _ = request(status, method, path)
        assert (code, headers["allow"]) == (405, "GET")
    assert status.envoy.calls == []  # nothing reached Envoy


def test_admin_paths_are_not_found_and_never_reach_envoy(status):
    for path in ("/quitquitquit", "/healthcheck/fail", "/logging", "/stats", "/config_dump", "/clusters", "/", "/ready/../stats"):
        code, _, body = request(status, "GET", path)
        assert code == 404 and "answers GET /metrics, /load, /ready" in json.loads(body)["error"]
    code, _, body = request(status, "HEAD", "/ready")
    assert (code, body) == (405, b"")
    assert status.envoy.calls == []


def test_config_problems_tell_a_rejected_file_from_one_not_loaded_yet():
    written = {"cds.pb": "v2", "rds.pb": "r1", "lds.json": "l1"}
    served = {"cds.pb": Subscription("v1", 1), "rds.pb": Subscription("r1", 3), "lds.json": Subscription("", 0)}
    assert config_problems(written, served) == {
        "cds.pb": "Envoy rejected cds.pb (it serves version v1, the file holds v2; 1 update(s) rejected, Envoy's log says why)",
        "lds.json": "Envoy has not loaded lds.json (it serves version none, the file holds l1)",
    }  # rds.pb serves what was written: an earlier rejection no longer matters
