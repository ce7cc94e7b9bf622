"""The local-process actuator: each replica a real azureml-inference-server-http process on 127.0.0.1.

Ready replicas are published to Envoy as the endpoints of their service's cluster (with the versioned
endpoints' routes, `endpoints()`, rendered from their live split); a replica scaled away is first taken out of
Envoy's config, then drained, then stopped. A replica that exits on its own (crash, OOM kill, `kill`)
is taken out of Envoy's config on the next `reconcile` and replaced, at once the first time and then
with doubling delays; after MAX_RESTARTS exits of one service within RESTART_WINDOW_SECONDS it is no
longer replaced until the window has passed (a crash loop would otherwise spin). Each exit and each
replacement is logged with the service's name and the replica's log file. Only acts on a change.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from local.net import LOOPBACK, free_port
from router.envoy_files import ConfigWriter
from router.metrics import in_flight_per_host
from router.spec import Endpoint, EndpointRoute, RouterSettings, ServiceRoute

log = logging.getLogger(__name__)

MAX_RESTARTS = 5  # replacements of one service's exited replicas within the window; then it stays down
RESTART_WINDOW_SECONDS = 300.0
MAX_RESTART_DELAY_SECONDS = 30.0


def replacement_due(exits: Sequence[float], now: float) -> float | None:
    """When a replica that exited may be replaced, given the times (monotonic seconds, oldest first)
    at which the service's replicas exited: at once for the first exit within RESTART_WINDOW_SECONDS,
    then 1, 2, 4 ... s (at most MAX_RESTART_DELAY_SECONDS) after the latest exit; None once more than
    MAX_RESTARTS exits fall within the window (a crash loop: no replacement until they age out)."""
    recent = [t for t in exits if now - t < RESTART_WINDOW_SECONDS]
    if len(recent) > MAX_RESTARTS:
        return None
    if len(recent) <= 1:
        return now
    return recent[-1] + min(MAX_RESTART_DELAY_SECONDS, 2.0 ** (len(recent) - 2))


@dataclass
class Replica:
    port: int
    process: subprocess.Popen
    log_path: Path
    ready: bool = False

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(LOOPBACK, self.port)

    def is_ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.port}/", timeout=0.5) as response:
                return response.status == 200
        except OSError:
            return False


@dataclass
class LocalService:
    route: ServiceRoute  # endpoints filled from ready replicas
    command: Callable[[int], list[str]]  # port -> argv of one replica
    replicas: list[Replica] = field(default_factory=list)
    wanted: int = 0
    exits: list[float] = field(default_factory=list)  # when replicas exited on their own (monotonic), oldest first


class LocalProcesses:
    """Model replicas as local processes; Envoy learns about them through the clusters file (CDS)."""

    def __init__(
        self, services: list[LocalService], writer: ConfigWriter, settings: RouterSettings, log_dir: Path,
        on_start: Callable[[str, Replica], None] = lambda service, replica: None,
        endpoints: Callable[[], list[EndpointRoute]] = list,
    ):
        """`on_start(service, replica)`: called as soon as a replica's process exists (local mode records it).
        `endpoints()`: the versioned endpoints' routes as they are to serve now (their versions are services here)."""
        self.services = {s.route.name: s for s in services}
        self.writer = writer
        self.settings = settings
        self.log_dir = log_dir
        self.on_start = on_start
        self.endpoints = endpoints
        self.lock = threading.RLock()
        self.draining: list[threading.Thread] = []
        self.stopped = False
        log_dir.mkdir(parents=True, exist_ok=True)

    # -- Actuator

    def ready_replicas(self, service: str) -> int:
        with self.lock:
            return sum(r.ready for r in self.services[service].replicas)

    def target(self, service: str) -> int:
        return self.services[service].wanted

    def scale(self, service: str, replicas: int) -> None:
        with self.lock:
            state = self.services[service]
            state.wanted = replicas
            while len(state.replicas) < replicas:
                state.replicas.append(self._spawn(state))
            surplus = state.replicas[replicas:]
            if surplus:
                state.replicas = state.replicas[:replicas]
                self.publish()  # the router stops sending new requests first...
                drain = threading.Thread(target=self._drain_and_stop, args=(state.route, surplus), daemon=True)
                self.draining.append(drain)
                drain.start()  # ...then in-flight requests finish, then the process stops

    # -- lifecycle

    def reconcile(self, now: float | None = None) -> bool:
        """Take out replicas that exited and replace them when due, publish replicas that became ready;
        True if Envoy's config changed. `now`: monotonic seconds (injected by tests)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            if self.stopped:
                return False
            changed = False
            for state in self.services.values():
                changed |= self._take_out_exited(state, now)
                self._replace_missing(state, now)
            return self.publish() if self._mark_ready() or changed else False

    def wait_ready(self, timeout: float) -> None:
        """Start-up: every replica ready and published, or an error naming the log of a replica that
        exited (one that exits here is not replaced: its service is broken, not unlucky)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                dead = [r for s in self.services.values() for r in s.replicas if r.process.poll() is not None]
                if dead:
                    raise RuntimeError(f"model server exited with {dead[0].process.returncode}; see {dead[0].log_path}")
                if self._mark_ready():
                    self.publish()
                if all(r.ready for s in self.services.values() for r in s.replicas):
                    return
            time.sleep(0.1)
        raise TimeoutError(f"model servers not ready after {timeout}s; see {self.log_dir}")

    def routes(self) -> list[ServiceRoute]:
        with self.lock:
            return [
                replace(s.route, endpoints=tuple(r.endpoint for r in s.replicas if r.ready)) for s in self.services.values()
            ]

    def publish(self) -> bool:
        with self.lock:
            return bool(self.writer.write(self.routes(), self.settings, self.endpoints()))

    def observe_latency(self, latencies: dict[str, float]) -> bool:
        """Record observed service times; re-publish only when a queue's size actually changes."""
        with self.lock:
            changed = False
            for name, latency in latencies.items():
                state = self.services.get(name)
                if state is None:
                    continue
                updated = replace(state.route, latency_ms=latency)
                ready = tuple(r.endpoint for r in state.replicas if r.ready)
                if replace(updated, endpoints=ready).queue_capacity() != replace(state.route, endpoints=ready).queue_capacity():
                    changed = True
                state.route = updated
            return self.publish() if changed else False

    def stop_all(self, timeout: float = 10.0) -> None:
        with self.lock:
            self.stopped = True  # no replacement starts after this
            replicas = [r for s in self.services.values() for r in s.replicas]
            for state in self.services.values():
                state.replicas = []
        for replica in replicas:
            _signal(replica.process, signal.SIGTERM)
        for replica in replicas:
            _wait_or_kill(replica.process, timeout)
        for drain in self.draining:
            drain.join(timeout)

    # -- internals

    def _mark_ready(self) -> bool:
        newly_ready = False
        for state in self.services.values():
            for replica in state.replicas:
                if not replica.ready and replica.process.poll() is None and replica.is_ready():
                    replica.ready = newly_ready = True
        return newly_ready

    def _take_out_exited(self, state: LocalService, now: float) -> bool:
        """Forget replicas whose process exited; True if one of them was in Envoy's config."""
        exited = [r for r in state.replicas if r.process.poll() is not None]
        if not exited:
            return False
        state.replicas = [r for r in state.replicas if r not in exited]
        state.exits = [t for t in state.exits if now - t < RESTART_WINDOW_SECONDS]
        for replica in exited:
            state.exits.append(now)
            due = replacement_due(state.exits, now)
            plan = (f"not replacing it: {len(state.exits)} exits within {RESTART_WINDOW_SECONDS:g} s" if due is None
                    else f"replacing it in {due - now:g} s")
            log.warning("service %s: replica on port %s exited with code %s (log: %s); %s",
                        state.route.name, replica.port, replica.process.returncode, replica.log_path, plan)
        return any(r.ready for r in exited)

    def _replace_missing(self, state: LocalService, now: float) -> None:
        missing = state.wanted - len(state.replicas)
        due = replacement_due(state.exits, now)
        if missing <= 0 or due is None or now < due:
            return
        for _ in range(missing):
            replica = self._spawn(state)
            state.replicas.append(replica)
            log.warning("service %s: started a replacement replica on port %s (log: %s)", state.route.name, replica.port, replica.log_path)

    def _spawn(self, state: LocalService) -> Replica:
        port = free_port()
        path = self.log_dir / f"{state.route.name}-{port}.log"
        log_file = open(path, "ab")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(state.command(port), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        log_file.close()
        replica = Replica(port, process, path)
        self.on_start(state.route.name, replica)
        return replica

    def _drain_and_stop(self, route: ServiceRoute, replicas: list[Replica]) -> None:
        admin = f"http://{self.settings.admin_host}:{self.settings.admin_port}"
        hosts = {str(r.endpoint) for r in replicas}
        deadline = time.monotonic() + route.scoring_timeout_ms / 1000 + 5
        while time.monotonic() < deadline:
            try:
                in_flight = in_flight_per_host(admin, route.cluster_name)
            except OSError:
                break
            if not any(host in in_flight for host in hosts):
                break  # Envoy applied the update: no new request reaches these replicas
            time.sleep(0.1)
        # Requests already sent finish: gunicorn's SIGTERM is graceful (workers complete what they hold).
        for replica in replicas:
            _signal(replica.process, signal.SIGTERM)
        for replica in replicas:
            _wait_or_kill(replica.process, max(10.0, route.scoring_timeout_ms / 1000 + 1))


def _signal(process: subprocess.Popen, sig: int) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass


def _wait_or_kill(process: subprocess.Popen, timeout: float) -> None:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        _signal(process, signal.SIGKILL)
        process.wait(timeout)


