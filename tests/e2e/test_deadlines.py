"""Deadlines with the real router and the real inference server on 127.0.0.1: a request the router has
given up on, or whose client has gone, is answered 504 and never reaches run().

One replica with one worker (maxConcurrentRequestsPerContainer 1) whose model records each run() in a
file and sleeps as each request asks. Four routes lead to it, each with its own cap of 1, as router
replicas each hold their share of a replica: `held` (scoringTimeoutMs 30 s) carries the slow request
that keeps the worker busy; `beside` (30 s), `short` (1 s) and `other` (2 s) send requests that wait
for it, in Envoy's queue or, past the route's cap, in the server's backlog.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from aksinf_runtime.deadlines import CLIENT_GONE, DEADLINE_PASSED, RECEIVED_HEADER, TIMEOUT_HEADER
from local import model_server as local_server
from local.envoy_process import EnvoyProcess
from local.net import LOOPBACK, free_port
from router.envoy_files import ConfigWriter
from router.spec import Endpoint, RouterSettings, ServiceRoute
from tests.fixtures_modeldata import wait_for
from tests.fixtures_services import model_server

RECORDING_MODEL = '''
import json, os, time

def init():
    global RUNS
    RUNS = os.path.join(os.environ["AZUREML_MODEL_DIR"], "runs.txt")

def run(raw_data):
    request = json.loads(raw_data)
    with open(RUNS, "a") as runs:
        runs.write(request["id"] + "\\n")
    time.sleep(float(request.get("sleep", 0)))
    return {"id": request["id"]}
'''
TIMEOUTS_MS = {"held": 30_000, "beside": 30_000, "short": 1000, "other": 2000}


@dataclass
class Drill:
    port: int  # the router's
    model_dir: Path  # where the model records its runs (runs.txt)
    log: Path  # the server's
    envoy: EnvoyProcess

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def runs(self) -> list[str]:
        path = self.model_dir / "runs.txt"
        return path.read_text().split() if path.exists() else []

    def refusals(self) -> list[dict]:
        """The replica's refusal log lines (JSON, with `refused` and the request id)."""
        lines = [line for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [record for record in map(json.loads, lines) if "refused" in record]

    def score(self, service: str, request_id: str, sleep: float = 0.0, headers: dict | None = None) -> httpx.Response:
        body = json.dumps({"id": request_id, "sleep": sleep})
        return httpx.post(f"{self.url}/api/v1/service/{service}/score", content=body, headers={"x-request-id": request_id, **(headers or {})}, timeout=40)

    def in_background(self, service: str, request_id: str, sleep: float = 0.0) -> tuple[threading.Thread, list]:
        answers: list = []
        thread = threading.Thread(target=lambda: answers.append(self.score(service, request_id, sleep)))
        thread.start()
        return thread, answers

    def started(self, request_id: str) -> None:
        wait_for(lambda: request_id in self.runs(), 10, f"run() of {request_id}")

    def stat(self, service: str, name: str) -> int:
        key = f"cluster.model-models-{service}.{name}"
        return self.envoy.stats(rf"^{key}$").get(key, 0)


def request_head(service: str, request_id: str, body: bytes) -> bytes:
    return (
        f"POST /api/v1/service/{service}/score HTTP/1.1\r\nHost: router\r\nx-request-id: {request_id}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    folder = tmp_path_factory.mktemp("deadline-model")
    (folder / "score.py").write_text(RECORDING_MODEL)
    model_dir = folder / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"\0")
    port = free_port()
    log = folder / "server.log"
    # The server's own timeout stays out of the way: the router's route timeouts are under test.
    argv = local_server.command(folder / "score.py", model_dir, port, workers=1, scoring_timeout_ms=60_000)
    with model_server(argv, log, port, timeout=60):
        replica = (Endpoint(LOOPBACK, port),)
        routes = [ServiceRoute(name, auth="none", scoring_timeout_ms=ms, max_concurrent=1, max_queue_wait_ms=30_000, endpoints=replica) for name, ms in TIMEOUTS_MS.items()]
        config_dir = folder / "envoy"
        settings = RouterSettings(config_dir=config_dir, listen_port=free_port(), admin_port=free_port(), access_log_path=str(folder / "access.log"))
        writer = ConfigWriter(config_dir)
        writer.write(routes, settings)
        with EnvoyProcess(writer.write_bootstrap(settings), settings.admin_port) as envoy:
            yield Drill(settings.listen_port, model_dir, log, envoy)


def _id() -> str:
    return str(uuid.uuid4())  # the router keeps a client's x-request-id only when it is a UUID


def test_client_sent_deadline_headers_are_replaced_by_the_routers(drill):
    """A client claiming its request arrived 10 s ago with a 1 ms budget: were the values passed on, the
    replica would refuse it; the router overwrites both, and the request runs."""
    request_id = _id()
    stale = {RECEIVED_HEADER: str(time.time_ns() // 1_000_000 - 10_000), TIMEOUT_HEADER: "1"}
    response = drill.score("held", request_id, headers=stale)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": request_id}
    assert request_id in drill.runs()


def test_requests_the_router_gave_up_on_never_run(drill):
    """The slow request outlives its 1 s scoringTimeoutMs: Envoy answers it 504 and frees its slot, so the
    request queued behind it goes to the replica, where it waits for the busy worker past its own deadline
    (Envoy answers it 504 too, freeing the slot for the next one, which does the same). When the worker is
    free, neither is run: it refuses both. The two are sent half a second apart, so each reaches the replica
    before its own deadline (sent together, both could time out in Envoy's queue on a loaded machine)."""
    slow, queued = _id(), [_id(), _id()]
    runs_before, refusals_before = len(drill.runs()), len(drill.refusals())
    thread, answers = drill.in_background("short", slow, sleep=2.5)
    drill.started(slow)
    others = []
    for request_id in queued:
        others.append(drill.in_background("short", request_id))
        time.sleep(0.5)
    for waiting in [thread, *(t for t, _ in others)]:
        waiting.join(40)
    assert [a[0].status_code for a in [answers, *(a for _, a in others)]] == [504, 504, 504]
    wait_for(lambda: len(drill.refusals()) >= refusals_before + 2, 15, "the replica's refusals")
    assert drill.runs()[runs_before:] == [slow]  # the queued requests never reached run()
    refused = drill.refusals()[refusals_before:]
    assert sorted(r["request_id"] for r in refused) == sorted(queued)
    assert {r["refused"] for r in refused} == {DEADLINE_PASSED}


def test_a_client_that_disconnects_while_queued_does_not_make_the_model_run(drill):
    """Two clients give up while a slow request holds the worker: one queued in Envoy (same route: never
    sent), one already sent to the replica by another route (waiting in the server's backlog, deadline
    far away). Neither reaches run(); the replica counts the second as a gone client."""
    slow, in_envoy, in_backlog = _id(), _id(), _id()
    runs_before, refusals_before = len(drill.runs()), len(drill.refusals())
    sent_to_replica = drill.stat("beside", "upstream_rq_total")
    thread, answers = drill.in_background("held", slow, sleep=2.0)
    drill.started(slow)
    clients = []
    for service, request_id in (("held", in_envoy), ("beside", in_backlog)):
        body = json.dumps({"id": request_id}).encode()
        client = socket.create_connection((LOOPBACK, drill.port), timeout=10)
        client.sendall(request_head(service, request_id, body) + body)
        clients.append(client)
    wait_for(lambda: drill.stat("held", "upstream_rq_pending_active") == 1, 5, "the request queued in Envoy")
    wait_for(lambda: drill.stat("beside", "upstream_rq_total") == sent_to_replica + 1, 5, "the request sent to the busy replica")
    for client in clients:
        client.close()
    thread.join(40)
    assert answers[0].status_code == 200
    wait_for(lambda: len(drill.refusals()) > refusals_before, 15, "the replica's refusal")
    assert drill.runs()[runs_before:] == [slow]
    [refused] = drill.refusals()[refusals_before:]
    assert (refused["request_id"], refused["refused"]) == (in_backlog, CLIENT_GONE)


def test_the_replicas_504_passes_through_the_router_unchanged(drill):
    """The deadline counts from the request's first byte, Envoy's timer from its last: a request whose
    body takes 2.2 s to arrive (2 s scoringTimeoutMs) and then waits for the busy worker is past its
    deadline when the worker takes it while Envoy still waits. The replica's JSON 504 reaches the client."""
    slow, late = _id(), _id()
    runs_before = len(drill.runs())
    thread, answers = drill.in_background("held", slow, sleep=3.0)
    drill.started(slow)
    body = json.dumps({"id": late}).encode()
    connection = http.client.HTTPConnection(LOOPBACK, drill.port, timeout=15)
    try:
        connection.putrequest("POST", "/api/v1/service/other/score")
        for name, value in (("x-request-id", late), ("Content-Type", "application/json"), ("Content-Length", str(len(body)))):
            connection.putheader(name, value)
        connection.endheaders()  # the head goes now: Envoy's start time, so the deadline, counts from here
        time.sleep(2.2)
        connection.send(body)
        response = connection.getresponse()
        status, payload = response.status, response.read()
    finally:
        connection.close()
    thread.join(40)
    assert status == 504, payload
    refused = json.loads(payload)
    assert refused["status"] == 504 and refused["reason"] == DEADLINE_PASSED and refused["requestId"] == late
    assert "Deadline passed" in refused["error"] and "scoringTimeoutMs (2000 ms)" in refused["error"]
    assert answers[0].status_code == 200
    assert drill.runs()[runs_before:] == [slow]

