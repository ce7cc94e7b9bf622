"""The runtime's refusal to start run() for a request past its deadline or whose client has gone: the pure
decision, the socket check and the Flask hook (the real server and router: tests/e2e/test_deadlines.py)."""

from __future__ import annotations

import json
import logging
import socket
import time

import flask
import pytest

from aksinf_runtime import deadlines, logs, request_ids
from aksinf_runtime.deadlines import CLIENT_GONE, DEADLINE_PASSED, RECEIVED_HEADER, TIMEOUT_HEADER, Deadline
from router import envoy_config
from tests.fixtures_router import render_settings, sample_routes

NOW = 1_800_000_000_000  # epoch ms


def test_the_router_and_the_runtime_name_the_same_headers():
    assert (envoy_config.RECEIVED_HEADER, envoy_config.TIMEOUT_HEADER) == (RECEIVED_HEADER, TIMEOUT_HEADER)


def test_every_forwarding_route_sets_the_deadline_headers_over_the_clients(tmp_path):
    files = envoy_config.render_dynamic(sample_routes(), render_settings(tmp_path))
    [table] = [t for t in files["rds.pb"]["resources"] if t["name"] == envoy_config.ROUTE_CONFIG]
    forwarding = {r["name"]: r for r in table["virtual_hosts"][0]["routes"] if "route" in r}
    assert set(forwarding) == {"keyed", "open"}  # "tokened" is answered by the router here (no token validation set up)
    timeouts = {r.name: r.scoring_timeout_ms for r in sample_routes()}
    for name, route in forwarding.items():
        added = {h["header"]["key"]: (h["header"]["value"], h["append_action"]) for h in route["request_headers_to_add"]}
        assert added == {
            RECEIVED_HEADER: ("%START_TIME(%s%3f)%", "OVERWRITE_IF_EXISTS_OR_ADD"),
            TIMEOUT_HEADER: (str(timeouts[name]), "OVERWRITE_IF_EXISTS_OR_ADD"),
        }


def test_the_deadline_is_received_time_plus_scoring_timeout():
    deadline = deadlines.read_deadline(str(NOW - 500), "60000", NOW)
    assert deadline == Deadline(NOW - 500, 60_000)
    assert deadline.at_ms == NOW + 59_500
    assert deadlines.read_deadline(f" {NOW} ", "1", NOW) == Deadline(NOW, 1)  # Envoy's values, spaces tolerated


def test_a_request_without_the_headers_has_no_deadline():
    assert deadlines.read_deadline(None, None, NOW) is None


@pytest.mark.parametrize(
    ("received", "timeout", "named"),
    [
        ("", "1000", RECEIVED_HEADER),
        ("-5", "1000", RECEIVED_HEADER),
        ("17e11", "1000", RECEIVED_HEADER),
        ("1.8e12", "1000", RECEIVED_HEADER),
        ("１２３", "1000", RECEIVED_HEADER),  # fullwidth digits: str.isdigit says yes, int() would accept them
        ("9" * 400, "1000", RECEIVED_HEADER),
        ("%START_TIME(%s%3f)%", "1000", RECEIVED_HEADER),  # an unformatted Envoy value
        (str(NOW), "0", TIMEOUT_HEADER),
        (str(NOW), str(2**31), TIMEOUT_HEADER),
        (str(NOW), "soon", TIMEOUT_HEADER),
        (str(NOW), None, TIMEOUT_HEADER),
        (None, "1000", RECEIVED_HEADER),
        (str(NOW + deadlines.MAX_CLOCK_SKEW_MS + 1), "1000", RECEIVED_HEADER),  # absurdly far in the future
        (str(NOW // 1000), "1000", RECEIVED_HEADER),  # seconds, not milliseconds: 1970 in ms
    ],
)
def test_a_malformed_or_implausible_header_is_refused_with_its_name(received, timeout, named):
    with pytest.raises(ValueError, match=named):
        deadlines.read_deadline(received, timeout, NOW)


def test_skew_within_the_bound_is_accepted():
    assert deadlines.read_deadline(str(NOW + deadlines.MAX_CLOCK_SKEW_MS), "1000", NOW) is not None


def test_only_a_deadline_in_the_past_refuses():
    deadline = Deadline(NOW - 1000, 1000)
    assert deadlines.refusal(deadline, NOW, client_gone=False) is None  # exactly at the deadline: still runs
    late = deadlines.refusal(deadline, NOW + 1, client_gone=False)
    assert late.reason == DEADLINE_PASSED
    assert "1001 ms after the router received it" in late.message and "1000 ms" in late.message
    assert deadlines.refusal(None, NOW, client_gone=False) is None


def test_a_gone_client_refuses_and_a_passed_deadline_is_named_first():
    assert deadlines.refusal(None, NOW, client_gone=True).reason == CLIENT_GONE
    assert deadlines.refusal(Deadline(NOW, 60_000), NOW, client_gone=True).reason == CLIENT_GONE
    assert deadlines.refusal(Deadline(NOW - 5000, 1000), NOW, client_gone=True).reason == DEADLINE_PASSED


def test_peer_closed_sees_the_close_behind_unread_request_bytes():
    here, there = socket.socketpair()
    with here, there:
        assert not deadlines.peer_closed(here)
        there.sendall(b"POST /score HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
        assert not deadlines.peer_closed(here)  # data waiting is not a close
        there.close()
        assert deadlines.peer_closed(here)  # a peek would return the bytes; POLLRDHUP sees the close
        assert here.recv(4).startswith(b"POST")  # nothing was read from it


def test_peer_closed_without_a_socket_is_unknown():
    assert not deadlines.peer_closed(None)
    closed = socket.socket()
    closed.close()
    assert not deadlines.peer_closed(closed)


@pytest.fixture
def server():
    """A Flask app shaped like the inference server's: blueprint "main", g.request_id set before the
    view `handle_score` (endpoint main.handle_score) that stands for run()."""
    blueprint = flask.Blueprint("main", __name__)
    runs: list[str] = []

    @blueprint.before_request
    def _init_headers():
        flask.g.request_id = flask.request.headers.get("x-request-id", "generated-id")

    @blueprint.route("/score", methods=["POST"])
    def handle_score():
        runs.append(flask.g.request_id)
        return {"ran": True}

    @blueprint.route("/", methods=["GET"])
    def health_probe():
        return "Healthy"

    app = flask.Flask(__name__)
    app.register_blueprint(blueprint)
    request_ids.run_after_server_hooks(app, deadlines.refuse_unstartable)
    request_ids.run_after_server_hooks(app, deadlines.refuse_unstartable)  # once
    assert app.before_request_funcs["main"].count(deadlines.refuse_unstartable) == 1
    return app.test_client(), runs


def _headers(received_ms: int, timeout_ms: int = 1000, request_id: str = "rid-1") -> dict:
    return {RECEIVED_HEADER: str(received_ms), TIMEOUT_HEADER: str(timeout_ms), "x-request-id": request_id}


def test_a_request_within_its_deadline_runs(server):
    client, runs = server
    now = time.time_ns() // 1_000_000
    assert client.post("/score", headers=_headers(now, 60_000)).status_code == 200
    assert runs == ["rid-1"]


def test_a_request_past_its_deadline_gets_504_naming_the_reason_and_request_id(server, caplog):
    client, runs = server
    before = deadlines.refused_counts().get(DEADLINE_PASSED, 0)
    now = time.time_ns() // 1_000_000
    with caplog.at_level(logging.WARNING, logger="azmlinfsrv.deadlines"):
        response = client.post("/score", headers=_headers(now - 5000, 1000, "late-1"))
    assert response.status_code == 504
    body = response.json
    assert body["status"] == 504 and body["requestId"] == "late-1" and body["reason"] == DEADLINE_PASSED
    assert "Deadline passed" in body["error"] and "scoringTimeoutMs (1000 ms)" in body["error"]
    assert runs == []
    assert deadlines.refused_counts()[DEADLINE_PASSED] == before + 1
    [record] = [r for r in caplog.records if getattr(r, "refused", "")]
    assert record.refused == DEADLINE_PASSED and "refused by this worker so far" in record.getMessage()
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["refused"] == DEADLINE_PASSED


def test_malformed_headers_are_ignored_with_one_warning_and_no_traceback(server, caplog, monkeypatch):
    client, runs = server
    monkeypatch.setattr(deadlines, "_state", deadlines._WorkerState())
    with caplog.at_level(logging.WARNING, logger="azmlinfsrv.deadlines"):
        for _ in range(3):
            response = client.post("/score", headers={RECEIVED_HEADER: "yesterday", TIMEOUT_HEADER: "1000"})
            assert response.status_code == 200
    assert len(runs) == 3
    [warning] = caplog.records
    assert RECEIVED_HEADER in warning.getMessage() and warning.exc_info is None


def test_only_the_scoring_view_is_checked(server):
    client, _ = server
    assert client.get("/", headers=_headers(1, 1)).status_code == 200  # a probe with absurd values: untouched
