"""The control loop: every refresh tick, collect load from the routers, decide per service, actuate.

Load comes from `collector(load_urls)`: in the cluster, every router replica's `/load` on its status
server (router/status.py); in local mode, the one local Envoy's admin API (router/metrics.py).
A service's scale-down window lives in this process; one it did not keep (a new leader's, or a
re-elected one's) starts from the replicas the Deployment runs now (`autoscaler.resumed_window`), so a
leader change never drops replicas before a full window has passed. With `on_latency` (local mode),
each tick also measures every service's time in service from the Envoy counters it read
(`metrics.ServiceTimes`) and hands it on to size the queues.

The data plane does not depend on this loop: Envoy keeps serving the last config it
loaded if the control plane stops or dies; only scaling and config changes pause.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from router.actuators import Actuator
from router.autoscaler import (
    AutoscaleSettings,
    Decision,
    Sample,
    decide,
    resumed_window,
)
from router.metrics import Load, ServiceTimes, collect


@dataclass
class ManagedService:
    name: str
    cluster: str
    settings: AutoscaleSettings


class ControlPlane:
    def __init__(
        self,
        services: list[ManagedService],
        actuator: Actuator,
        load_urls: list[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        collector: Callable[[list[str]], dict[str, Load]] = collect,
        registry: CollectorRegistry | None = None,
        on_tick: Callable[[], object] | None = None,
        on_latency: Callable[[dict[str, float]], object] | None = None,
    ):
        self.actuator = actuator
        self.load_urls = load_urls
        self.clock = clock
        self.collector = collector
        self.on_tick = on_tick
        # Measured service times (queueing excluded) size the queues (maxQueueWaitMs): local mode reads
        # its one Envoy here; in a cluster each replica measures its own (router/status.py: LocalEnvoy).
        self.on_latency = on_latency
        self.service_times = ServiceTimes()
        self.registry = registry or CollectorRegistry()
        self.decisions = Counter("aksinf_scaling_decisions", "Scaling changes applied", ["service", "direction"], registry=self.registry)
        self.desired = Gauge("aksinf_desired_replicas", "Replicas the autoscaler wants", ["service"], registry=self.registry)
        self.actual = Gauge("aksinf_ready_replicas", "Replicas ready to serve", ["service"], registry=self.registry)
        self.util = Gauge("aksinf_utilization", "(busy + queued) / replicas", ["service"], registry=self.registry)
        self.tick_seconds = Gauge("aksinf_tick_seconds", "Duration of the last control-loop tick", registry=self.registry)
        self.history: dict[str, tuple[tuple[float, int], ...]] = {}
        self.set_services(services)

    def set_services(self, services: list[ManagedService]) -> None:
        """Follow discovery: changed settings apply at once, a kept service keeps its scale-down window,
        and a removed service's series disappear from /metrics instead of going stale."""
        kept = {s.name for s in services}
        for gone in set(self.history) - kept:
            series = [(self.desired, (gone,)), (self.actual, (gone,)), (self.util, (gone,))]
            series += [(self.decisions, (gone, direction)) for direction in ("up", "down")]
            for metric, labels in series:
                with contextlib.suppress(KeyError):  # never ticked or never scaled: no series yet
                    metric.remove(*labels)
        self.services = services
        self.history = {s.name: self.history.get(s.name, ()) for s in services}

    def tick(self) -> dict[str, Decision]:
        started = time.perf_counter()
        if self.on_tick:
            self.on_tick()
        loads = self.collector(self.load_urls)
        now = self.clock()
        decisions = {}
        for service in self.services:
            load = loads.get(service.cluster, Load())
            ready = self.actuator.ready_replicas(service.name)
            current = self.actuator.target(service.name)
            window = resumed_window(self.history[service.name], now, current)
            decision = decide(Sample(now, load.active, load.pending, ready), service.settings, window)
            self.history[service.name] = decision.recommendations
            if decision.desired != current:
                self.actuator.scale(service.name, decision.desired)
                self.decisions.labels(service.name, "up" if decision.desired > current else "down").inc()
            self.desired.labels(service.name).set(decision.desired)
            self.actual.labels(service.name).set(ready)
            self.util.labels(service.name).set(decision.utilization)
            decisions[service.name] = decision
        if self.on_latency:
            measured = self.service_times.observe(now, loads)
            observed = {s.name: measured[s.cluster].latency_ms for s in self.services if s.cluster in measured and measured[s.cluster].latency_ms}
            if observed:
                self.on_latency(observed)
        self.tick_seconds.set(time.perf_counter() - started)
        return decisions

    def run(self, stop: threading.Event, refresh_seconds: float | None = None) -> None:
        interval = refresh_seconds or min((s.settings.refresh_seconds for s in self.services), default=1.0)
        while not stop.is_set():
            self.tick()
            stop.wait(interval)
