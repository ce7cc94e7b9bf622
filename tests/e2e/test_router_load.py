"""The router under load, with real Envoy on 127.0.0.1: the queue admits what can start within
maxQueueWaitMs as it fills, a killed replica is ejected, a slow uploader holds no replica, and several
router replicas together keep a service's concurrency cap. Every loop is bounded in count and time."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import pytest

from local.net import LOOPBACK, free_port
from router.envoy_config import OUTLIER_LOCAL_FAILURES, render_dynamic
from router.envoy_files import validate_config
from router.spec import Endpoint, ServiceRoute
from router.status import LocalEnvoy
from tests.fixtures_router import render_settings, sample_routes, with_endpoints


def score(router, name: str, timeout: float = 10.0) -> httpx.Response:
    return httpx.post(f"{router.url}/api/v1/service/{name}/score", content=b'{"data": [1]}', timeout=timeout)


def test_envoy_accepts_the_load_settings(tmp_path):
    """Shares for 3 routers, outlier detection, the body buffer, the receive deadline and the heap budget."""
    settings = render_settings(tmp_path, router_replicas=3, request_timeout_ms=2000, max_heap_bytes=768 * 2**20)
    validate_config(render_dynamic(sample_routes(), settings), settings)


def test_twelve_clients_on_a_10ms_model_are_all_served_as_the_queue_fills(envoy_router, replica):
    """1 replica x 1 slot, maxQueueWaitMs 500, 12 closed-loop clients: 11 wait about 110 ms, well within
    the budget. The control loop (as each router replica runs it) re-sizes the queue from the service
    time its Envoy measures; the old feed (upstream_rq_time, queueing included) shrank it to ~4 and
    refused most requests."""
    _, endpoint = replica(0.01)
    route = ServiceRoute("steady", auth="none", max_queue_wait_ms=500, endpoints=(endpoint,))
    router = envoy_router([route])
    envoy = LocalEnvoy(router.settings.admin_port)
    stop, statuses, lock = threading.Event(), [], threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=10) as http:
            for _ in range(400):  # bounded; the loop below stops it sooner
                if stop.is_set():
                    return
                status = http.post(f"{router.url}/api/v1/service/steady/score", content=b"{}").status_code
                with lock:
                    statuses.append(status)

    threads = [threading.Thread(target=client) for _ in range(12)]
    for thread in threads:
        thread.start()
    measured = None
    try:
        # At least 4 s of load, on until a service time is measured (at most 20 s: a busy machine measures later);
        # the queue is re-sized twice a second.
        for tick in range(40):
            time.sleep(0.5)
            measured = envoy.load().get(route.cluster_name)
            router.writer.write([replace(route, latency_ms=measured.latency_ms if measured else None)], router.settings)
            if tick >= 7 and measured is not None and measured.latency_ms is not None:
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert measured is not None and measured.latency_ms is not None  # a service time was measured and used
    assert statuses and set(statuses) == {200}, f"{statuses.count(503)} of {len(statuses)} refused"


# A replica as a process of its own: it shares no interpreter lock with the test's clients (in one
# process, twelve client threads made a "10 ms" model take 50 ms), and a killed one refuses connections.
REPLICA = """
import socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in two writes: without this, Nagle and delayed ACKs add 40 ms each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(float(sys.argv[2]))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _serve

    def log_message(self, *args):
        pass

ThreadingHTTPServer.request_queue_size = 1024  # a real server's backlog, not Python's 5
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def _replica(seconds: float = 0.0) -> tuple[subprocess.Popen, Endpoint]:
    """A model replica answering every request after `seconds`, on 127.0.0.1."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", REPLICA, str(port), str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):  # bounded: about 10 s
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.5).close()
            return process, Endpoint(LOOPBACK, port)
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("replica stand-in did not start")


@pytest.fixture
def replica():
    started: list[subprocess.Popen] = []

    def start(seconds: float = 0.0) -> tuple[subprocess.Popen, Endpoint]:
        process, endpoint = _replica(seconds)
        started.append(process)
        return process, endpoint

    yield start
    for process in started:
        process.kill()
        process.wait(10)


def test_a_killed_replica_is_ejected_and_requests_keep_succeeding(envoy_router, replica):
    """Two replicas, one killed: its connections are refused, each such request is retried on the
    other replica, and after OUTLIER_LOCAL_FAILURES refusals Envoy ejects it, so least-request stops
    choosing it (it shows 0 active requests, the least of all)."""
    first, dead_endpoint = replica()
    _, live_endpoint = replica()
    route = ServiceRoute("pair", auth="none", max_concurrent=4, endpoints=(dead_endpoint, live_endpoint))
    router = envoy_router([route])

    def get() -> int:
        return httpx.get(f"{router.url}/api/v1/service/pair/", timeout=10).status_code

    assert [get() for _ in range(4)] == [200] * 4
    first.kill()
    first.wait(10)
    prefix = "cluster.model-models-pair."
    statuses = []
    for _ in range(40):  # bounded: until Envoy ejects the dead replica
        statuses.append(get())
        if router.envoy.stats(rf"^{prefix}outlier_detection\.ejections_active$").get(f"{prefix}outlier_detection.ejections_active"):
            break
    assert set(statuses) == {200}  # a refused connection never reached a model: retried elsewhere
    stats = router.envoy.stats(rf"^{prefix}(outlier_detection\.ejections_active|upstream_cx_connect_fail)$")
    assert stats[f"{prefix}outlier_detection.ejections_active"] == 1
    failures = stats[f"{prefix}upstream_cx_connect_fail"]
    assert [get() for _ in range(10)] == [200] * 10
    after = router.envoy.stats(rf"^{prefix}upstream_cx_connect_fail$")[f"{prefix}upstream_cx_connect_fail"]
    assert after - failures <= OUTLIER_LOCAL_FAILURES  # ejected: tried again at most once more after its ejection ends


def test_a_slow_uploader_holds_no_replica_and_gets_408(envoy_router, fake_model):
    """A 1-slot service; one client sends its body a byte at a time. Envoy buffers the body before
    choosing a replica, so a normal request meanwhile is served, and the trickler is cut off with 408
    when the whole request has not arrived within request_timeout_ms."""
    model = fake_model()
    router = envoy_router([with_endpoints(ServiceRoute("single", auth="none", max_concurrent=1), model)], request_timeout_ms=2000)
    slow = socket.create_connection((LOOPBACK, router.settings.listen_port), timeout=10)
    answer: list[bytes] = []

    def trickle() -> None:
        slow.sendall(b"POST /api/v1/service/single/score HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n")
        for _ in range(40):  # at most 40 of the 64 bytes, one each 0.2 s: the body never completes
            if answer:
                return
            try:
                slow.sendall(b" ")
            except OSError:
                return  # Envoy answered and closed
            time.sleep(0.2)

    sender = threading.Thread(target=trickle)
    sender.start()
    try:
        time.sleep(0.5)  # the slow request is in Envoy, its body trickling
        assert score(router, "single", timeout=3.0).status_code == 200
        answer.append(slow.recv(4096))
    finally:
        sender.join(15)
        slow.close()
    assert answer[0].startswith(b"HTTP/1.1 408"), answer[0][:200]
    assert b"Request timeout" in answer[0]
    assert len(model.requests) == 1  # only the normal request reached the model


def test_three_routers_together_keep_a_replicas_concurrency_cap(envoy_router, fake_model):
    """maxConcurrentRequestsPerContainer 3 behind 3 router replicas: each Envoy lets 1 through, so 9
    concurrent clients (3 per router) never have more than 3 requests on the replica."""
    model = fake_model(delay=0.3)
    route = with_endpoints(ServiceRoute("capped", auth="none", max_concurrent=3, max_queue_wait_ms=5000), model)
    routers = [envoy_router([route], router_replicas=3) for _ in range(3)]
    with ThreadPoolExecutor(9) as pool:
        statuses = [f.result().status_code for f in [pool.submit(score, router, "capped") for router in routers for _ in range(3)]]
    assert statuses == [200] * 9
    assert 1 <= model.peak_active <= 3
