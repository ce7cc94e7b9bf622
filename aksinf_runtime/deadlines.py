"""Requests the model never starts: past their deadline, or with nobody left waiting for the answer.

A request can wait before `run()` starts, in the router's queue (Envoy) and in the inference server's
backlog (its workers each take one request at a time). v1 and AML v2 replicas then ran work that nobody
would read: the router had answered 504 at its scoring timeout, or the client had gone. Here the
inference server checks every scoring request just before `run()` (a Flask before-request hook, after
the server's own, so the request id is known) and answers 504 instead of running it when:

- its **deadline has passed**. The router adds two headers to every request it forwards, overwriting
  any the client sent (router/envoy_config.py `_deadline_headers`; the two names are kept equal by a
  test): `x-aksinf-received-ms`, when Envoy received the request's first byte (epoch milliseconds,
  `%START_TIME(%s%3f)%`), and `x-aksinf-timeout-ms`, the service's scoringTimeoutMs (Envoy's route
  timeout). The deadline is their sum. Envoy can add the two itself only with its CEL formatter, which
  cost about 20 us more Envoy CPU per request than the plain start time in a rough measurement (wrk,
  shared 2-core machine); the sum is one line here.
- its **client has gone**: Envoy closes its connection to the replica when the client disconnects or
  when its own scoring timeout fires (a request still queued in Envoy is simply never sent). The
  server's worker sees that as the peer's half-close on the request's socket (gunicorn puts the socket
  in the WSGI environ as `gunicorn.socket`, for its sync and gthread workers alike); `peer_closed`
  asks the kernel with a zero-timeout poll for POLLRDHUP, which is set even while unread request
  bytes are buffered (a peek would return those bytes, not the end of the stream). POLLRDHUP is
  Linux's (the images and local mode); elsewhere only the deadline is checked. A caller that shuts
  down its sending side after the request and still reads the answer would be taken for gone; Envoy
  never half-closes a connection to a replica, so only a direct caller could (none is allowed in the
  cluster: the replicas' NetworkPolicy admits the router alone).

Clocks: the deadline is compared with the replica's clock, set by another node's. AKS nodes are Azure
VMs whose clocks chrony keeps on the host's PTP clock, itself kept on Microsoft's time servers
(https://learn.microsoft.com/azure/virtual-machines/linux/time-sync): the skew between nodes is well
under a millisecond to a few milliseconds. A skew of s moves a refusal by s: it matters only for a
request that reaches `run()` within s of its deadline, which Envoy is about to answer 504 itself. A
received time more than MAX_CLOCK_SKEW_MS ahead of the replica's clock, or more than MAX_AGE_MS behind
it, is not a clock the router could have (a broken clock or a unit error): the headers are then ignored
(a warning, once per worker) and the request runs, as it would without them.

The caller gets 504 with the router's error body shape (`status`, `error`, `requestId`). When Envoy's
own timer fired first (the usual case for a deadline: it starts when the whole request has arrived,
the deadline when its first byte did), Envoy has already answered 504 "Scoring timeout" and the
replica's answer only saves the model's time; when the deadline passed while Envoy still waits (the
request's upload took time), Envoy passes the replica's 504 through unchanged (local_reply_config
rewrites only Envoy's own answers). Refusals are counted per worker and logged (logger
`azmlinfsrv.deadlines`, a JSON line with `refused`: `deadline-passed` | `client-gone`, the request id
and the worker's running counts); the server's own request line logs the 504.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import time
from collections import Counter
from dataclasses import dataclass, field

# Set by the router, never by the client (Envoy overwrites them: OVERWRITE_IF_EXISTS_OR_ADD).
RECEIVED_HEADER = "x-aksinf-received-ms"
TIMEOUT_HEADER = "x-aksinf-timeout-ms"
# The inference server's scoring view (azureml_inference_server_http.server.routes.handle_score on
# blueprint "main"): the only request that runs the entry script.
SCORE_ENDPOINT = "main.handle_score"
# The WSGI environ key under which gunicorn's workers put the client socket (gunicorn/http/wsgi.py).
SOCKET_ENVIRON_KEY = "gunicorn.socket"
MAX_CLOCK_SKEW_MS = 60_000  # a received time further ahead than this is not the router's clock
# Nor is one older than this (seconds sent for milliseconds, a zero): longer than the longest scoringTimeoutMs
# (int32 ms, ~24.9 days) with days of backlog on top.
MAX_AGE_MS = 31 * 24 * 3600 * 1000
MAX_TIMEOUT_MS = 2**31 - 1  # scoringTimeoutMs is 1..int32 (router/spec.py WHOLE_NUMBER_BOUNDS)
MAX_DIGITS = 16  # epoch milliseconds have 13 digits until the year 2286
DEADLINE_PASSED = "deadline-passed"
CLIENT_GONE = "client-gone"
STATUS = 504

# Under the server's own logger: its handler and formatter (JSON lines with the request id, `logs`) print
# refusals beside its request lines, and a user's logging.json that configures `azmlinfsrv` covers them.
log = logging.getLogger("azmlinfsrv.deadlines")


@dataclass(frozen=True)
class Deadline:
    received_ms: int  # when the router received the request, epoch milliseconds (the router's clock)
    timeout_ms: int  # the service's scoringTimeoutMs

    @property
    def at_ms(self) -> int:
        return self.received_ms + self.timeout_ms


@dataclass(frozen=True)
class Refusal:
    reason: str  # DEADLINE_PASSED | CLIENT_GONE
    message: str


def _whole_number(header: str, value: str) -> int:
    text = value.strip()
    if not text.isdigit() or not text.isascii() or len(text) > MAX_DIGITS:
        raise ValueError(f"{header}: expected whole milliseconds (at most {MAX_DIGITS} digits), got {value[:40]!r}")
    return int(text)


def read_deadline(received: str | None, timeout: str | None, now_ms: int) -> Deadline | None:
    """The request's deadline from the router's two headers; None when neither is present (a request that
    did not come through the router: a probe, a direct call). Raises ValueError, naming the header, for a
    value that is not whole milliseconds, only one of the two headers, or a received time no router clock
    could have (more than MAX_CLOCK_SKEW_MS ahead of `now_ms`, or older than MAX_AGE_MS)."""
    if received is None and timeout is None:
        return None
    if received is None or timeout is None:
        missing = RECEIVED_HEADER if received is None else TIMEOUT_HEADER
        raise ValueError(f"{missing}: missing (the router sets it with {TIMEOUT_HEADER if received is None else RECEIVED_HEADER})")
    deadline = Deadline(_whole_number(RECEIVED_HEADER, received), _whole_number(TIMEOUT_HEADER, timeout))
    if not 1 <= deadline.timeout_ms <= MAX_TIMEOUT_MS:
        raise ValueError(f"{TIMEOUT_HEADER}: must be 1..{MAX_TIMEOUT_MS} ms, got {deadline.timeout_ms}")
    if deadline.received_ms > now_ms + MAX_CLOCK_SKEW_MS:
        raise ValueError(f"{RECEIVED_HEADER}: {deadline.received_ms - now_ms} ms ahead of this replica's clock (at most {MAX_CLOCK_SKEW_MS} ms of skew is plausible)")
    if deadline.received_ms < now_ms - MAX_AGE_MS:
        raise ValueError(f"{RECEIVED_HEADER}: {deadline.received_ms} is older than {MAX_AGE_MS} ms (epoch milliseconds expected)")
    return deadline


def refusal(deadline: Deadline | None, now_ms: int, client_gone: bool) -> Refusal | None:
    """Why the model must not start this request, or None to run it. A passed deadline is named first:
    it is also why the router closes the connection when its own timer fires."""
    if deadline is not None and now_ms > deadline.at_ms:
        return Refusal(
            DEADLINE_PASSED,
            f"Deadline passed: the request reached the model {now_ms - deadline.received_ms} ms after the router received it, "
            f"beyond scoringTimeoutMs ({deadline.timeout_ms} ms); it was not run",
        )
    if client_gone:
        return Refusal(CLIENT_GONE, "Client gone: the connection closed while the request waited for the model; it was not run")
    return None


def error_body(found: Refusal, request_id: str) -> dict:
    """The router's error body shape (router/envoy_config.py ERROR_BODY), plus the refusal's reason."""
    return {"status": STATUS, "error": found.message, "requestId": request_id, "reason": found.reason}


# --------------------------------------------------------------------------- effects


def peer_closed(sock: socket.socket | None) -> bool:
    """True if the other end has closed or reset the connection; reads nothing. False when unknown
    (no socket in the environ, or a system without POLLRDHUP)."""
    rdhup = getattr(select, "POLLRDHUP", 0)
    if sock is None or not rdhup or not hasattr(select, "poll"):
        return False
    poller = select.poll()
    try:
        poller.register(sock, rdhup)
    except (ValueError, TypeError, OSError):  # closed here, or not a socket
        return False
    return any(events & (rdhup | select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))


@dataclass
class _WorkerState:
    """What one server worker process has refused, and whether it has warned of ignored headers."""

    refused: Counter[str] = field(default_factory=Counter)
    warned: bool = False


_state = _WorkerState()


def refused_counts() -> dict[str, int]:
    """Requests this worker process refused so far, by reason."""
    return dict(_state.refused)


def refuse_unstartable():
    """A Flask before-request hook on the inference server: a 504 response for a scoring request the
    model must not start, None to let it run."""
    from flask import Response, g, request

    if request.endpoint != SCORE_ENDPOINT:
        return None
    now_ms = time.time_ns() // 1_000_000
    try:
        deadline = read_deadline(request.headers.get(RECEIVED_HEADER), request.headers.get(TIMEOUT_HEADER), now_ms)
    except ValueError as problem:
        if not _state.warned:
            _state.warned = True
            log.warning("deadline headers ignored (this worker warns once): %s", problem)
        deadline = None
    found = refusal(deadline, now_ms, peer_closed(request.environ.get(SOCKET_ENVIRON_KEY)))
    if found is None:
        return None
    _state.refused[found.reason] += 1
    log.warning(
        "%s (refused by this worker so far: %d deadline passed, %d client gone)",
        found.message, _state.refused[DEADLINE_PASSED], _state.refused[CLIENT_GONE], extra={"refused": found.reason},
    )
    g.api_name = "/score"  # the server's after-request hook then logs its usual request line, with the 504
    request_id = getattr(g, "request_id", "") or request.headers.get("x-request-id", "")
    return Response(json.dumps(error_body(found, request_id)), status=STATUS, mimetype="application/json")
