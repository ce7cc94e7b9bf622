"""The control loop: every refresh tick, collect load from the routers, decide per service and per
endpoint, actuate, and keep what a successor needs in the router-owned store.

Load comes from `collector(load_urls)`: in the cluster, every router replica's `/load` on its status
server (router/status.py); in local mode, the one local Envoy's admin API (router/metrics.py).
With `on_latency` (local mode), each tick also measures every service's time in service from the
Envoy counters it read (`metrics.ServiceTimes`) and hands it on to size the queues.

Scaling: each service (an endpoint's versions included: each scales on its own load) is decided by
router/autoscaler.py. Its scale-down window lives in this process and, with a `store`
(router/state.py), is persisted in wall-clock time whenever its stored form changes. A window this
process did not keep (a new leader's, or a re-elected one's) continues the one the store holds
(`autoscaler.resumed_window`), else starts from the replicas the Deployment runs now: a leader change
never drops replicas before their window has passed.

Canary analysis: each endpoint with a rollout (`set_endpoints`) is decided every tick by
router/canary.py from the stats of its versions' clusters over the current analysis window (requests,
5xx and p99 accumulated from successive readings, `metrics.counted_since`; restarted when the decision
starts a new window). The decided split and rollout state go to the store (the traffic entry every
router replica renders from) and to `on_traffic` (local mode re-renders at once). A stored entry of
another revision is dropped: the configuration changed, the rollout restarts. Endpoints without a
rollout serve their configured split and have no entry. Every decision is counted on /metrics
(`aksinf_rollout_decisions_total`), the live split and step exported, and every decision other than a
hold, and every phase change, logged. Rollout times are wall-clock (they are stored and read by the
next leader); the autoscaler's are the monotonic `clock`, converted through `wall_clock` when stored.
A new leader counts a window's requests from its first reading (the requests before are not in its
sums): it extends the window rather than promote on fewer than minRequests.

The data plane does not depend on this loop: Envoy keeps serving the last config it
loaded if the control plane stops or dies; only scaling and config changes pause.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from prometheus_client import CollectorRegistry, Counter, Gauge

from router import canary
from router.actuators import Actuator
from router.autoscaler import (
    AutoscaleSettings,
    Decision,
    Sample,
    decide,
    resumed_window,
)
from router.discovery import DiscoveredEndpoint
from router.metrics import Counts, Load, ServiceTimes, collect, counted_since
from router.spec import ServiceRoute
from router.state import (
    RouterState,
    StateNotSaved,
    StateStore,
    TrafficEntry,
    endpoint_key,
    live_splits,
    persisted_window,
    stored_split,
)

log = logging.getLogger(__name__)


@dataclass
class ManagedService:
    name: str
    cluster: str
    settings: AutoscaleSettings
    namespace: str = "models"

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class AnalysisWindow:
    """What one endpoint's versions served since its rollout window started (this process's sums)."""

    started: float  # the rollout state's window_started it belongs to
    counts: dict[str, Counts]  # version -> counts


class ControlPlane:
    def __init__(
        self,
        services: list[ManagedService],
        actuator: Actuator,
        load_urls: list[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        collector: Callable[[list[str]], dict[str, Load]] = collect,
        registry: CollectorRegistry | None = None,
        store: StateStore | None = None,
        on_tick: Callable[[], object] | None = None,
        on_latency: Callable[[dict[str, float]], object] | None = None,
        on_traffic: Callable[[RouterState], object] | None = None,
    ):
        self.actuator = actuator
        self.load_urls = load_urls
        self.clock = clock
        self.wall_clock = wall_clock
        self.collector = collector
        self.store = store
        self.on_tick = on_tick
        # Measured service times (queueing excluded) size the queues (maxQueueWaitMs): local mode reads
        # its one Envoy here; in a cluster each replica measures its own (router/status.py: LocalEnvoy).
        self.on_latency = on_latency
        self.on_traffic = on_traffic  # the live splits changed: render them now (else on the next round)
        self.service_times = ServiceTimes()
        self.registry = registry or CollectorRegistry()
        self.decisions = Counter("aksinf_scaling_decisions", "Scaling changes applied", ["service", "direction"], registry=self.registry)
        self.desired = Gauge("aksinf_desired_replicas", "Replicas the autoscaler wants", ["service"], registry=self.registry)
        self.actual = Gauge("aksinf_ready_replicas", "Replicas ready to serve", ["service"], registry=self.registry)
        self.util = Gauge("aksinf_utilization", "(busy + queued) / replicas", ["service"], registry=self.registry)
        self.tick_seconds = Gauge("aksinf_tick_seconds", "Duration of the last control-loop tick", registry=self.registry)
        self.traffic_percent = Gauge(
            "aksinf_endpoint_traffic_percent", "Percent of an endpoint's client requests each version answers (the live split)",
            ["endpoint", "version"], registry=self.registry,
        )
        self.rollout_decisions = Counter(
            "aksinf_rollout_decisions", "Canary decisions per endpoint (step_up, hold, roll_back)", ["endpoint", "action"], registry=self.registry,
        )
        self.rollout_step = Gauge("aksinf_rollout_step", "Index of the rollout step an endpoint is at", ["endpoint"], registry=self.registry)
        self.history: dict[str, tuple[tuple[float, int], ...]] = {}
        self.endpoints: list[DiscoveredEndpoint] = []
        self.windows: dict[str, AnalysisWindow] = {}  # endpoint key -> its analysis window's counts
        self.readings: dict[str, Load] = {}  # cluster -> the last summed reading (what the next one is counted from)
        self.state = RouterState()  # as last loaded or decided
        self.set_services(services)

    def set_services(self, services: list[ManagedService]) -> None:
        """Follow discovery: changed settings apply at once, a kept service keeps its scale-down window,
        and a removed service's series disappear from /metrics instead of going stale."""
        kept = {s.name for s in services}
        for gone in set(self.history) - kept:
            series = [(self.desired, (gone,)), (self.actual, (gone,)), (self.util, (gone,))]
            series += [(self.decisions, (gone, direction)) for direction in ("up", "down")]
            _remove(series)
        self.services = services
        self.history = {s.name: self.history.get(s.name, ()) for s in services}

    def set_endpoints(self, endpoints: Iterable[DiscoveredEndpoint]) -> None:
        """Follow discovery: every endpoint found, refused ones included. Those served with a rollout are
        analysed; a refused one keeps its stored entry untouched (a rollback is not forgotten while a
        version is briefly missing); a removed endpoint's series disappear and its window is forgotten."""
        endpoints = list(endpoints)
        kept = {endpoint_key(e.route) for e in endpoints}
        versions = {(e.route.name, v.version) for e in endpoints for v in e.route.versions}
        _remove([(self.traffic_percent, (e.route.name, v.version)) for e in self.endpoints for v in e.route.versions
                 if (e.route.name, v.version) not in versions])
        for gone in [e for e in self.endpoints if endpoint_key(e.route) not in kept]:
            name = gone.route.name
            _remove([(self.rollout_decisions, (name, action)) for action in ("step_up", "hold", "roll_back")] + [(self.rollout_step, (name,))])
        self.windows = {key: window for key, window in self.windows.items() if key in kept}
        self.endpoints = endpoints

    def tick(self, state: RouterState | None = None) -> dict[str, Decision]:
        """One round: scale every service, decide every rollout, persist. `state`: the store's state as the
        caller just read it (else it is read here)."""
        started = time.perf_counter()
        if self.on_tick:
            self.on_tick()
        loads = self.collector(self.load_urls)
        now = self.clock()
        wall = self.wall_clock()
        offset = wall - now  # monotonic -> wall-clock seconds, for what is stored
        if state is None:
            state = self.store.load() if self.store else self.state
        windows = dict(state.autoscaler)
        decisions = {}
        for service in self.services:
            load = loads.get(service.cluster, Load())
            ready = self.actuator.ready_replicas(service.name)
            current = self.actuator.target(service.name)
            carried = tuple((t - offset, d) for t, d in windows.get(service.key, ()))
            window = resumed_window(self.history[service.name], now, current, carried)
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
        autoscaler = {s.key: persisted_window((t + offset, d) for t, d in self.history[s.name]) for s in self.services}
        traffic = self._analyse(state, loads, wall)
        self.state = RouterState(traffic, {key: window for key, window in autoscaler.items() if window})
        if self.store:
            try:
                self.store.save(self.state)
            except StateNotSaved as error:
                log.error("router state not saved (%s); the next tick retries", error)
        if self.on_traffic and live_splits(self.state) != live_splits(state):
            self.on_traffic(self.state)
        self.tick_seconds.set(time.perf_counter() - started)
        return decisions

    def _analyse(self, state: RouterState, loads: dict[str, Load], now: float) -> dict[str, TrafficEntry]:
        """Every endpoint's next traffic entry: decided for a served endpoint with a rollout, kept as stored
        for a refused one, none for an endpoint without a rollout or gone."""
        traffic = {}
        readings = {}
        for endpoint in self.endpoints:
            key, name = endpoint_key(endpoint.route), endpoint.route.name
            if endpoint.route.problems:
                if key in state.traffic:
                    traffic[key] = state.traffic[key]
                continue
            increments = {}
            for version in endpoint.route.versions:
                cluster = ServiceRoute(version.version, endpoint.route.namespace).cluster_name
                if (reading := loads.get(cluster)) is None:
                    continue
                readings[cluster] = reading
                if (previous := self.readings.get(cluster)) is not None and (counted := counted_since(previous, reading)) is not None:
                    increments[version.version] = counted
            if endpoint.rollout is None:
                split = tuple((v.version, v.weight) for v in endpoint.route.versions)
            else:
                traffic[key] = self._decide(endpoint, endpoint.rollout, state, increments, now)
                split = traffic[key].split
            for version, percent in split:
                self.traffic_percent.labels(name, version).set(percent)
        self.readings = readings
        return traffic

    def _decide(
        self, endpoint: DiscoveredEndpoint, rollout: canary.RolloutPolicy, state: RouterState, increments: dict[str, Counts], now: float
    ) -> TrafficEntry:
        """The endpoint's next entry: `canary.decide` on the window's counts so far plus this tick's."""
        key, name = endpoint_key(endpoint.route), endpoint.route.name
        policy = replace(rollout, revision=endpoint.revision)
        entry = state.traffic.get(key)
        previous = entry.rollout_state() if entry is not None and stored_split(endpoint, state) is not None else None
        window = self.windows.get(key)
        if previous is None or window is None or window.started != previous.window_started:
            window = AnalysisWindow(previous.window_started if previous else now, {})
        counts = {v: window.counts.get(v, Counts()) + increments.get(v, Counts()) for v in {*window.counts, *increments}}
        stats = {v: canary.VersionStats(int(c.requests), int(c.server_errors), c.p99_ms()) for v, c in counts.items()}
        decision = canary.decide(policy, previous, stats, now)
        self.windows[key] = AnalysisWindow(decision.state.window_started, counts if decision.state.window_started == window.started else {})
        self.rollout_decisions.labels(name, decision.action).inc()
        self.rollout_step.labels(name).set(decision.state.step)
        if decision.action != "hold" or previous is None or previous.phase != decision.state.phase:
            log.info("endpoint %s: %s (%s); split %s", key, decision.action, decision.reason, dict(decision.split))
        return TrafficEntry.of(decision.state, decision.split)

    def run(self, stop: threading.Event, refresh_seconds: float | None = None) -> None:
        interval = refresh_seconds or min((s.settings.refresh_seconds for s in self.services), default=1.0)
        while not stop.is_set():
            self.tick()
            stop.wait(interval)


def _remove(series: list[tuple[Gauge | Counter, tuple[str, ...]]]) -> None:
    for metric, labels in series:
        with contextlib.suppress(KeyError):  # never set: no series yet
            metric.remove(*labels)
