"""A router replica's HTTP surface next to Envoy, and whether the replica is ready.

Envoy's admin API answers on 127.0.0.1 only: it can stop Envoy, fail its health checks and turn on
debug logging, and has no authentication. What others need from a replica is served here instead,
read-only, by the control plane (in a pod on `AKSINF_METRICS_PORT`, locally on a loopback port):

  GET /metrics   the control plane's Prometheus registry
  GET /load      this replica's Envoy gauges, service-time estimate, request and 5xx counters and
                 latency histogram per service cluster (`router.metrics.load_document`), which the
                 leader sums over replicas (autoscaling, canary analysis); 503 when the local Envoy
                 does not answer
  GET /ready     200 {"ready": true} when the local Envoy is ready and serves every config file as
                 the control plane last wrote it; else 503 {"ready": false, "reasons": [...]}

Any other path is 404, and POST, PUT, DELETE, PATCH, HEAD, OPTIONS, TRACE and CONNECT are 405 (a
method HTTP does not define gets the standard library's 501). Nothing is proxied to the admin API:
the server reaches Envoy only through the three reads of `EnvoyAdmin`.

Whether Envoy serves a file as written: every dynamic file carries a version_info (a hash of its
resources, router/envoy_config.py); Envoy reports, per file, the version it serves and how many
updates it rejected (`SUBSCRIPTION_STATS`). A rejected file leaves Envoy on the previous version.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    generate_latest,
)

from router.discovery import DiscoveredService
from router.envoy_config import SUBSCRIPTION_STATS
from router.envoy_files import ConfigWriter
from router.metrics import (
    READ_TIMEOUT_SECONDS,
    Load,
    ServiceTimes,
    envoy_load,
    load_document,
)
from router.spec import ADMIN_HOST

log = logging.getLogger(__name__)

JSON = "application/json"
CLIENT_IDLE_SECONDS = 5  # a client holding a connection without sending is dropped
STOP_POLL_SECONDS = 0.1  # how soon `stop` takes effect


class Subscription(NamedTuple):
    """What Envoy reports about the subscription that loads one dynamic file."""

    version: str | None  # the version_info it serves (None: no such subscription yet)
    rejected: int  # updates of the file it refused since it started


class EnvoyAdmin(Protocol):
    """The three reads the control plane makes of its own Envoy's admin API."""

    def ready(self) -> bool: ...

    def load(self) -> dict[str, Load]: ...

    def subscriptions(self) -> dict[str, Subscription]: ...


class LocalEnvoy:
    """`EnvoyAdmin` over this replica's Envoy admin API on loopback. Every read raises OSError or
    ValueError when the admin API does not answer properly. `load` carries the service time this
    Envoy measured (`ServiceTimes` over its successive readings), which sizes this replica's queues."""

    def __init__(self, admin_port: int, timeout: float = READ_TIMEOUT_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.url = f"http://{ADMIN_HOST}:{admin_port}"
        self.timeout = timeout
        self.clock = clock
        self.service_times = ServiceTimes()

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=self.timeout) as response:
                return response.status == 200
        except urllib.error.HTTPError:  # 503 while Envoy initializes or drains
            return False

    def load(self) -> dict[str, Load]:
        return self.service_times.observe(self.clock(), envoy_load(self.url, self.timeout))

    def subscriptions(self) -> dict[str, Subscription]:
        prefixes = "|".join(re.escape(prefix) for prefix in SUBSCRIPTION_STATS.values())
        query = urllib.parse.urlencode({"format": "json", "filter": rf"^({prefixes})\.(version_text|update_rejected)$"})
        with urllib.request.urlopen(f"{self.url}/stats?{query}", timeout=self.timeout) as response:
            stats = {stat.get("name"): stat.get("value") for stat in json.load(response).get("stats", [])}
        return {
            file: Subscription(stats.get(f"{prefix}.version_text"), int(stats.get(f"{prefix}.update_rejected") or 0))
            for file, prefix in SUBSCRIPTION_STATS.items()
        }


def config_problems(written: Mapping[str, str], served: Mapping[str, Subscription]) -> dict[str, str]:
    """file -> why Envoy does not serve it as written ({} when it serves every file). Envoy applies a
    file within milliseconds, so a mismatch that lasts is a file it rejected."""
    problems = {}
    for file, version in sorted(written.items()):
        subscription = served.get(file, Subscription(None, 0))
        if subscription.version == version:
            continue
        serving = f"it serves version {subscription.version or 'none'}, the file holds {version}"
        if subscription.rejected:
            problems[file] = f"Envoy rejected {file} ({serving}; {subscription.rejected} update(s) rejected, Envoy's log says why)"
        else:
            problems[file] = f"Envoy has not loaded {file} ({serving})"
    return problems


def readiness(envoy: EnvoyAdmin, written: Mapping[str, str]) -> list[str]:
    """Why this replica must not receive traffic; [] when it may."""
    try:
        if not envoy.ready():
            return ["Envoy is not ready (its admin /ready is not 200)"]
        if not written:
            return ["the control plane has not written Envoy's config yet"]
        return list(config_problems(written, envoy.subscriptions()).values())
    except (OSError, ValueError) as error:
        return [f"Envoy's admin API does not answer ({error})"]


class HealthReport:
    """What the router refuses and what Envoy rejects, on /metrics and in the log. A problem is logged
    when it appears and when it is gone, not every round."""

    def __init__(self, registry: CollectorRegistry):
        self.refused_services = Gauge(
            "aksinf_rejected_services", "Model Services the router refuses to route (1 each; the log names the problems)",
            ["namespace", "service"], registry=registry,
        )
        self.rejected_files = Gauge(
            "aksinf_envoy_config_rejected", "1 while Envoy does not serve this config file as the control plane wrote it",
            ["file"], registry=registry,
        )
        self.refused: dict[str, tuple[str, ...]] = {}
        self.rejected: set[str] = set()

    def services(self, found: Iterable[DiscoveredService]) -> None:
        refused = {d.source: d.route.problems for d in found if d.route.problems}
        for source, problems in refused.items():
            if self.refused.get(source) != problems:
                log.warning("Service %s is refused (not routed, not scaled): %s", source, "; ".join(problems))
                self.refused_services.labels(*source.split("/", 1)).set(1)
        for source in self.refused.keys() - refused.keys():
            log.info("Service %s is no longer refused (served, or gone)", source)
            self.refused_services.remove(*source.split("/", 1))
        self.refused = refused

    def envoy_config(self, envoy: EnvoyAdmin, written: Mapping[str, str]) -> None:
        """Call a round after a write: a file Envoy still does not serve as written was rejected."""
        try:
            problems = config_problems(written, envoy.subscriptions())
        except (OSError, ValueError):
            return  # Envoy does not answer: nothing to tell about its config (readiness says so)
        for file in SUBSCRIPTION_STATS:
            self.rejected_files.labels(file).set(1 if file in problems else 0)
        for file in problems.keys() - self.rejected:
            log.error("%s", problems[file])
        for file in self.rejected - problems.keys():
            log.info("Envoy serves %s as written again", file)
        self.rejected = set(problems)


Page = tuple[int, bytes, str]  # status, body, content type


class StatusServer:
    """The read-only HTTP server described in the module docstring, in a daemon thread."""

    def __init__(self, address: tuple[str, int], registry: CollectorRegistry, envoy: EnvoyAdmin, writer: ConfigWriter):
        self.registry, self.envoy, self.writer = registry, envoy, writer
        self.pages: dict[str, Callable[[], Page]] = {"/metrics": self._metrics, "/load": self._load, "/ready": self._ready}
        self.httpd = _Server(address, _Handler)
        self.httpd.status = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": STOP_POLL_SECONDS}, daemon=True, name="status-server")

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> StatusServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def _metrics(self) -> Page:
        return 200, generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _load(self) -> Page:
        try:
            return 200, _json(load_document(self.envoy.load())), JSON
        except (OSError, ValueError) as error:
            return 503, _json({"error": f"Envoy's admin API does not answer ({error})"}), JSON

    def _ready(self) -> Page:
        reasons = readiness(self.envoy, self.writer.versions)
        if reasons:
            return 503, _json({"ready": False, "reasons": reasons}), JSON
        return 200, _json({"ready": True}), JSON


def _json(document: object) -> bytes:
    return json.dumps(document).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    status: StatusServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CLIENT_IDLE_SECONDS

    def do_GET(self) -> None:
        page = self.server.status.pages.get(urllib.parse.urlsplit(self.path).path)
        if page is None:
            self._send(404, _json({"error": f"not found: this server answers GET {', '.join(self.server.status.pages)}"}), JSON)
        else:
            self._send(*page())

    def _not_allowed(self) -> None:
        self._send(405, _json({"error": "method not allowed: this server is read-only (GET)"}), JSON, allow="GET")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def _send(self, status: int, body: bytes, content_type: str, allow: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: probes and peers ask every second or few."""
