"""The local-process actuator: each replica a real azureml-inference-server-http process on 127.0.0.1.

Ready replicas are published to Envoy as EDS endpoints; a replica scaled away is first taken out of
Envoy's config, then drained, then stopped. Only acts on a change.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from local.net import LOOPBACK, free_port
from router.envoy_files import ConfigWriter
from router.metrics import in_flight_per_host
from router.spec import Endpoint, RouterSettings, ServiceRoute


@dataclass
class Replica:
    port: int
    process: subprocess.Popen
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


class LocalProcesses:
    """Model replicas as local processes; Envoy learns about them through EDS files."""

    def __init__(self, services: list[LocalService], writer: ConfigWriter, settings: RouterSettings, log_dir: Path):
        self.services = {s.route.name: s for s in services}
        self.writer = writer
        self.settings = settings
        self.log_dir = log_dir
        self.lock = threading.RLock()
        self.draining: list[threading.Thread] = []
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

    def reconcile(self) -> bool:
        """Publish replicas that became ready since the last call; True if Envoy's config changed."""
        with self.lock:
            newly_ready = False
            for state in self.services.values():
                for replica in state.replicas:
                    if not replica.ready and replica.process.poll() is None and replica.is_ready():
                        replica.ready = newly_ready = True
            return self.publish() if newly_ready else False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.reconcile()
            with self.lock:
                if all(r.ready for s in self.services.values() for r in s.replicas):
                    return
                dead = [r for s in self.services.values() for r in s.replicas if r.process.poll() is not None]
            if dead:
                raise RuntimeError(f"model server exited with {dead[0].process.returncode}; see {self.log_dir}")
            time.sleep(0.1)
        raise TimeoutError(f"model servers not ready after {timeout}s; see {self.log_dir}")

    def routes(self) -> list[ServiceRoute]:
        with self.lock:
            return [
                replace(s.route, endpoints=tuple(r.endpoint for r in s.replicas if r.ready)) for s in self.services.values()
            ]

    def publish(self) -> bool:
        return bool(self.writer.write(self.routes(), self.settings))

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

    def _spawn(self, state: LocalService) -> Replica:
        port = free_port()
        log = open(self.log_dir / f"{state.route.name}-{port}.log", "ab")  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(state.command(port), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return Replica(port, process)

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


