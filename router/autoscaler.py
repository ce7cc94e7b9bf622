"""The autoscaling decision, azureml-fe style: a pure function (samples and time in, replicas out).

utilization = (busy replicas + queued requests) / replicas, where busy = in-flight / maxConcurrent.
Desired = ceil((busy + queued) / target), clamped to [min, max]. Scale-up takes effect on the
next tick (~1 s); scale-down only to the highest desired value of the last window (~60 s, the
Knative "scale-down delay" rule), so a dip in traffic never drops replicas that a burst needs.
A window the deciding control plane did not keep (a new leader, or one elected again after another
led) continues the one the previous leader persisted (router/state.py), else starts from the replicas
running now (`resumed_window`), never from nothing.
No I/O here: metric collection and actuation live in router/metrics.py and router/actuators.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EPSILON = 1e-9  # floating-point slack so exactly-on-target loads do not round up
# The leader ticks every refresh (~1 s). A history with no entry this recent was not kept by ticks: a
# leader change takes at least a lease duration (15 s, router/leader.py), so a new leader's history
# is empty and a re-elected one's is older than this.
HISTORY_GAP_SECONDS = 10.0


@dataclass(frozen=True)
class AutoscaleSettings:
    enabled: bool = True
    min_replicas: int = 1
    max_replicas: int = 10
    target_utilization: float = 0.7  # fraction (v1's targetUtilization 70 -> 0.7)
    refresh_seconds: float = 1.0
    scale_down_window_seconds: float = 60.0
    max_concurrent: int = 1  # maxConcurrentRequestsPerContainer
    fixed_replicas: int = 1  # used when autoscaling is off (v1 numReplicas, or DevTest)


@dataclass(frozen=True)
class Sample:
    """What the routers saw for one service at `time`, summed over every router replica."""

    time: float
    active: float  # requests on a replica (Envoy upstream_rq_active)
    pending: float  # requests waiting for a replica slot (Envoy upstream_rq_pending_active)
    ready_replicas: int


@dataclass(frozen=True)
class Decision:
    desired: int
    utilization: float
    recommendations: tuple[tuple[float, int], ...]  # (time, raw desired) within the scale-down window


def utilization(sample: Sample, settings: AutoscaleSettings) -> float:
    busy = sample.active / settings.max_concurrent
    return (busy + sample.pending) / max(1, sample.ready_replicas)


def resumed_window(
    previous: tuple[tuple[float, int], ...], now: float, replicas: int, carried: tuple[tuple[float, int], ...] = ()
) -> tuple[tuple[float, int], ...]:
    """The window a decision at `now` starts from: `previous` while this control plane kept it
    (an entry in the last HISTORY_GAP_SECONDS); else `carried`, the window the previous leader
    persisted (in this clock), when it accounts for the replicas the Deployment runs (its highest
    entry is at least `replicas`: otherwise it lags a scale-up and is not trusted), so its peaks expire
    when they would have under that leader; else the replicas running now, as if decided at `now`.
    Without that, a new leader knows no recent peak and would drop 10 replicas to 1 on its first
    tick; with it, scaling down waits for the window like any other."""
    if previous and previous[-1][0] > now - HISTORY_GAP_SECONDS:
        return previous
    if carried and max(d for _, d in carried) >= replicas:
        return carried
    return ((now, replicas),)


def decide(sample: Sample, settings: AutoscaleSettings, previous: tuple[tuple[float, int], ...] = ()) -> Decision:
    current = utilization(sample, settings)
    if not settings.enabled:
        return Decision(settings.fixed_replicas, current, ())
    busy = sample.active / settings.max_concurrent
    raw = math.ceil((busy + sample.pending) / settings.target_utilization - EPSILON)
    raw = min(settings.max_replicas, max(settings.min_replicas, raw))
    horizon = sample.time - settings.scale_down_window_seconds
    window = tuple((t, d) for t, d in previous if t > horizon) + ((sample.time, raw),)
    highest = max(d for _, d in window)  # clamp again: min/max may have changed since older entries
    return Decision(min(settings.max_replicas, max(settings.min_replicas, highest)), current, window)


def replicas_for_load(rps: float, seconds: float, utilization: float, concurrency: int) -> int:
    """Azure ML v1's sizing formula: ceil(rps * request time / target utilization / concurrency)."""
    if rps <= 0 or seconds <= 0 or not 0 < utilization <= 1 or concurrency < 1:
        raise ValueError("need rps > 0, seconds > 0, 0 < utilization <= 1, concurrency >= 1")
    return math.ceil(rps * seconds / utilization / concurrency - EPSILON)
