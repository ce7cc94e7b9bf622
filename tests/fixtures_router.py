"""Router fixtures: the real Envoy binary and tiny model stand-ins, all on 127.0.0.1."""

from __future__ import annotations

import json
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from local.envoy_process import EnvoyProcess
from local.net import LOOPBACK, free_port
from router.envoy_files import ConfigWriter
from router.spec import Endpoint, RouterSettings, ServiceRoute
from router.status import LocalEnvoy, StatusServer


STAND_IN_PORTS_FROM = 20000


class _ReplicaServer(ThreadingHTTPServer):
    daemon_threads = True
    # A real server's backlog (gunicorn's is 2048): with Python's default of 5, connections Envoy opens in a
    # burst (a hundred mirrored copies) are refused while the accept loop waits for the CPU.
    request_queue_size = 1024

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # Envoy hung up first (timeout and drop drills)
            return
        super().handle_error(request, client_address)


def _bind_below_ephemeral_ports(handler) -> _ReplicaServer:
    """A stand-in on a random port below the kernel's ephemeral range. Ports from `free_port()` (bind to 0) come
    from that range, and parallel tests start replicas, Envoys and probes on them: a stand-in that took a port
    another test's replica had just been given (or had just left) received that test's requests and probes."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(STAND_IN_PORTS_FROM, low), 100):
        try:
            return _ReplicaServer((LOOPBACK, port), handler)
        except OSError:  # in use
            continue
    raise OSError(f"no free port from {STAND_IN_PORTS_FROM} to {low} after 100 tries")


@dataclass
class FakeModel:
    """A keep-alive HTTP/1.1 server standing in for a model replica."""

    delay: float = 0.0
    status: int = 200
    drop: bool = False  # close the connection instead of answering (a crashed replica)
    requests: list = field(default_factory=list)
    active: int = 0
    peak_active: int = 0

    def start(self) -> FakeModel:
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without TCP_NODELAY the body waits for Envoy's delayed ACK (40 ms).
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _serve(self):
                model.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "bytes": self._read_body()})
                model.active += 1
                model.peak_active = max(model.peak_active, model.active)
                try:
                    time.sleep(model.delay)
                finally:
                    model.active -= 1
                if model.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = json.dumps({"path": self.path, "port": model.port}).encode()
                self.send_response(model.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _read_body(self) -> int:
                """Read the whole body first, as a real inference server does (chunked included)."""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    total = 0
                    while True:
                        line = self.rfile.readline()
                        if not line:  # the sender reset mid-body: no complete request arrived
                            raise ConnectionResetError("chunked body cut off")
                        size = int(line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return total
                        total += len(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return len(self.rfile.read(length)) if length else 0

            do_GET = do_POST = _serve

        self.server = _bind_below_ephemeral_ports(Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(LOOPBACK, self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_model():
    started: list[FakeModel] = []

    def make(**kwargs) -> FakeModel:
        model = FakeModel(**kwargs).start()
        started.append(model)
        return model

    yield make
    for model in started:
        model.stop()


@dataclass
class RunningRouter:
    settings: RouterSettings
    writer: ConfigWriter
    envoy: EnvoyProcess
    routes: list[ServiceRoute]

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.tls else "http"
        return f"{scheme}://{LOOPBACK}:{self.settings.listen_port}"

    def update(self, routes: list[ServiceRoute], settle: float = 0.5) -> list[str]:
        self.routes = routes
        changed = self.writer.write(routes, self.settings)
        time.sleep(settle)  # Envoy reloads on the rename; give it a moment
        return changed

    def access_log(self) -> list[dict]:
        path = Path(self.settings.access_log_path)
        return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")] if path.exists() else []


@pytest.fixture
def envoy_router(tmp_path):
    started: list[RunningRouter] = []

    def start(routes: list[ServiceRoute], **settings_kwargs) -> RunningRouter:
        config_dir = tmp_path / f"envoy-{len(started)}"
        settings = RouterSettings(
            config_dir=config_dir,
            listen_port=free_port(),
            admin_port=free_port(),
            access_log_path=str(tmp_path / f"access-{len(started)}.log"),
            **settings_kwargs,
        )
        writer = ConfigWriter(config_dir)
        writer.write(routes, settings)
        envoy = EnvoyProcess(writer.write_bootstrap(settings), settings.admin_port).start()
        router = RunningRouter(settings, writer, envoy, list(routes))
        started.append(router)
        return router

    yield start
    for router in started:
        router.envoy.stop()


@pytest.fixture
def router_status():
    """`start(router)`: the control plane's status server (/metrics, /load, /ready) for a running router, on 127.0.0.1."""
    started: list[StatusServer] = []

    def start(router: RunningRouter) -> StatusServer:
        server = StatusServer((LOOPBACK, 0), CollectorRegistry(), LocalEnvoy(router.settings.admin_port), router.writer).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def with_endpoints(route: ServiceRoute, *models: FakeModel) -> ServiceRoute:
    return replace(route, endpoints=tuple(m.endpoint for m in models))


PRIMARY, SECONDARY = "p" * 32, "s" * 32


def render_settings(tmp_path, **kwargs) -> RouterSettings:
    """Settings for rendering only (no Envoy runs on these ports)."""
    return RouterSettings(config_dir=tmp_path, listen_port=18080, admin_port=19901, **kwargs)


def sample_routes() -> list[ServiceRoute]:
    """One service per auth mode, with and without replicas."""
    return [
        ServiceRoute("keyed", keys=(PRIMARY, SECONDARY), endpoints=(Endpoint("127.0.0.1", 5001), Endpoint("127.0.0.1", 5002))),
        ServiceRoute("tokened", auth="token", endpoints=(Endpoint("127.0.0.1", 5003),)),
        ServiceRoute("open", auth="none", scoring_timeout_ms=120_000, max_concurrent=4),
    ]
