"""Load per service cluster: read from one Envoy's admin API, served to peers as JSON, summed by the leader.

Envoy's admin API answers on 127.0.0.1 only, so each router replica reads its own Envoy
(`envoy_load`) and serves the result on its status server (`GET /load`, router/status.py, in the
`load_document` shape); the leader reads every replica's `/load` (`replica_load`) and sums them
(`collect`). Local mode has one Envoy and reads its admin API directly (`collect(..., read=envoy_load)`).

Service time (what sizes a queue, ServiceRoute.queue_capacity) is measured without the time a request
waited for a replica slot: Envoy's `upstream_rq_time` starts before the wait, so it grows as the queue
fills and a queue sized from it shrinks under load. Instead, Little's law on the requests in service:
upstream_rq_active (requests on a replica; queued ones are upstream_rq_pending_active, not counted
here) over departures per second between two readings: requests started on a replica
(`upstream_rq_total`) minus the growth of the in-service gauge. Departures, not Envoy's
`upstream_rq_completed`: that counter misses requests whose client went away.
`next_service_time` is that estimate as a pure function of two readings; `ServiceTimes` keeps the
readings between calls.

Per-version stats for canary analysis (router/canary.py) come from the same reading: the counters
`upstream_rq_total` (requests sent to a replica) and `upstream_rq_5xx` (5xx answered, as Envoy counts them
for the cluster: the replicas' own and the ones Envoy answers for a reset or timed-out upstream), and the
histogram of `upstream_rq_time` as cumulative bucket counts (`/stats?histogram_buckets=cumulative`:
per bucket upper bound in ms, the requests at most that slow since Envoy started;
https://www.envoyproxy.io/docs/envoy/latest/operations/admin#get--stats). Counters and buckets add up over
router replicas exactly, so the leader's sum is the endpoint's whole histogram and a window's p99 is read
from the difference of two sums (`Counts.p99_ms`), not guessed from per-replica percentiles. Envoy merges
histograms on its stats flush (every 5 s by default), so buckets trail the counters by up to that.
`counted_since` is the difference of two readings as a pure function; it refuses a pair it cannot compare
(a router restarted, or one more or fewer answered), so a window never counts a router's whole history.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from router.spec import PRIOR_SERVICE_TIME_MS

STATS_FILTER = r"^cluster\.model-[^.]*\.upstream_rq_(active|pending_active|total|5xx|time)$"
READ_TIMEOUT_SECONDS = 0.5
MAX_GAUGE = 2**53  # larger than any request count; every value up to it is exact as a float
# Readings closer together than this are not compared (too few departures to count): the status
# server and the reconcile round both read the same Envoy, about once a second each.
MIN_INTERVAL_SECONDS = 0.5
SMOOTHING = 0.5  # weight of a new interval's service time against the estimate so far
# The service time a queue is sized from changes only when the estimate moves beyond this factor: every
# resize replaces the service's Envoy cluster, and requests in flight on the old cluster object do not
# count against the new one's per-replica cap (one extra request per replica, for one request's time).
RESIZE_FACTOR = 1.5


@dataclass(frozen=True)
class Load:
    active: float = 0.0
    pending: float = 0.0
    routers_seen: int = 0
    latency_ms: float | None = None  # service time, queueing excluded (`ServiceTimes`; the slowest router's)
    started: float = 0.0  # Envoy's upstream_rq_total counter (requests sent to a replica, ever)
    server_errors: float = 0.0  # Envoy's upstream_rq_5xx counter
    # upstream_rq_time as (bucket upper bound ms, requests at most that slow), ever, bounds increasing
    latency_buckets: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Counts:
    """What one cluster served over an interval: requests, 5xx and the latency histogram (cumulative buckets)."""

    requests: float = 0.0
    server_errors: float = 0.0
    latency_buckets: tuple[tuple[float, float], ...] = ()

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.requests + other.requests, self.server_errors + other.server_errors,
                      add_buckets(self.latency_buckets, other.latency_buckets))

    def p99_ms(self) -> float | None:
        return percentile_ms(self.latency_buckets, 0.99)


def add_buckets(a: tuple[tuple[float, float], ...], b: tuple[tuple[float, float], ...], sign: int = 1) -> tuple[tuple[float, float], ...]:
    """Bucket counts added (or subtracted, `sign` -1) bound by bound. Histograms with other bounds cannot be
    combined: the result is the first one when the second is empty, else empty (unknown)."""
    if not b:
        return a
    if not a and sign == 1:
        return b
    if [bound for bound, _ in a] != [bound for bound, _ in b]:
        return ()
    return tuple((bound, x + sign * y) for (bound, x), (_, y) in zip(a, b))


def percentile_ms(buckets: tuple[tuple[float, float], ...], quantile: float) -> float | None:
    """The `quantile` of a histogram in cumulative buckets, interpolated linearly inside its bucket (the
    way Envoy computes its own quantiles); None without a sample."""
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    rank = quantile * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank and count > below:
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return buckets[-1][0]


def counted_since(previous: Load, now: Load) -> Counts | None:
    """What a cluster served between two summed readings (pure). None when they cannot be compared: another
    number of routers answered (one missing from a sum, or back in it, would count its whole history) or a
    counter went back (a router's Envoy restarted)."""
    if now.routers_seen != previous.routers_seen:
        return None
    counted = Counts(now.started - previous.started, now.server_errors - previous.server_errors,
                     add_buckets(now.latency_buckets, previous.latency_buckets, sign=-1) if previous.latency_buckets else now.latency_buckets)
    if counted.requests < 0 or counted.server_errors < 0 or any(count < 0 for _, count in counted.latency_buckets):
        return None
    return counted


@dataclass(frozen=True)
class ServiceTime:
    """One cluster's service-time estimate and the reading it was last compared from."""

    time: float  # seconds (monotonic) of the reading
    started: float  # upstream_rq_total then
    in_service: float  # upstream_rq_active then
    ms: float | None = None  # the smoothed estimate; None until measured


def next_service_time(previous: ServiceTime | None, now: float, started: float, in_service: float) -> ServiceTime:
    """The estimate after a new reading (pure: readings and time in, estimate out).

    Between two readings, Little's law gives the mean time in service: requests in service over
    departures per second (departures = started in between - growth of the in-service count). The
    in-service count is a gauge read at two instants, so the smaller of the two is taken: a request caught by chance on an idle service would otherwise read as a
    slow one, and an estimate that is too slow shrinks the queue and refuses requests; one that is
    too fast only lets a few more wait. With no departure in between, the requests in service at
    the earlier reading are all still running, so the service time is at least the interval: the
    estimate rises to it and the earlier reading is kept (a 60 s model is known slow long before
    its first answer). Each interval's measurement moves the estimate by SMOOTHING, starting from
    the fast prior (PRIOR_SERVICE_TIME_MS): a service warming up under a burst is not judged by its
    slowest first second. Readings less than MIN_INTERVAL_SECONDS apart, or with nothing in service,
    leave the estimate as it is; a counter that went back (Envoy restarted) starts over."""
    if previous is None or started < previous.started or now < previous.time:
        return ServiceTime(now, started, in_service, previous.ms if previous else None)
    elapsed = now - previous.time
    if elapsed < MIN_INTERVAL_SECONDS:
        return previous
    departed = (started - previous.started) - (in_service - previous.in_service)
    if departed <= 0:
        if previous.in_service < 1:
            return ServiceTime(now, started, in_service, previous.ms)
        return replace(previous, ms=max(previous.ms or 0.0, elapsed * 1000))
    busy = min(previous.in_service, in_service)
    if busy <= 0:
        return ServiceTime(now, started, in_service, previous.ms)
    observed = busy * elapsed * 1000 / departed
    smoothed = SMOOTHING * observed + (1 - SMOOTHING) * (previous.ms if previous.ms is not None else PRIOR_SERVICE_TIME_MS)
    return ServiceTime(now, started, in_service, smoothed)


def sizing_time(sized: float | None, estimate: float | None) -> float | None:
    """The service time to size a queue from: the one it is sized from (`sized`) while the estimate
    stays within RESIZE_FACTOR of it, else the estimate."""
    if sized is None or estimate is None or sized / RESIZE_FACTOR <= estimate <= sized * RESIZE_FACTOR:
        return estimate if sized is None else sized
    return estimate


class ServiceTimes:
    """`next_service_time` and `sizing_time` per cluster across readings (thread-safe: the status
    server reads from its threads)."""

    def __init__(self) -> None:
        self.estimates: dict[str, ServiceTime] = {}
        self.sized: dict[str, float | None] = {}
        self.lock = threading.Lock()

    def observe(self, now: float, loads: Mapping[str, Load]) -> dict[str, Load]:
        """`loads` (raw readings) with `latency_ms` set to the service time each cluster's queue is
        sized from; clusters gone are forgotten."""
        with self.lock:
            self.estimates = {
                cluster: next_service_time(self.estimates.get(cluster), now, load.started, load.active) for cluster, load in loads.items()
            }
            self.sized = {cluster: sizing_time(self.sized.get(cluster), self.estimates[cluster].ms) for cluster in loads}
            return {cluster: replace(load, latency_ms=self.sized[cluster]) for cluster, load in loads.items()}


# Envoy stat name -> Load field
STAT_FIELDS = {"upstream_rq_active": "active", "upstream_rq_pending_active": "pending", "upstream_rq_total": "started", "upstream_rq_5xx": "server_errors"}
LATENCY_HISTOGRAM = "upstream_rq_time"


def parse_stats(payload: dict) -> dict[str, Load]:
    """`/stats?format=json&histogram_buckets=cumulative` -> {cluster: one router's Load (no service time)}.
    Only `cluster.<cluster>.<stat>` counts: Envoy also keeps `cluster.<cluster>.external.<stat>` copies."""
    found: dict[str, dict] = defaultdict(dict)
    for stat in payload.get("stats", []):
        histograms = stat.get("histograms")
        for histogram in histograms if isinstance(histograms, list) else []:
            cluster, metric = _cluster_stat(histogram.get("name", ""))
            if cluster and metric == LATENCY_HISTOGRAM:
                found[cluster]["latency_buckets"] = tuple((float(b["upper_bound"]), float(b["cumulative"])) for b in histogram.get("buckets", []))
        cluster, metric = _cluster_stat(stat.get("name", ""))
        if cluster and metric in STAT_FIELDS and stat.get("value") is not None:
            found[cluster][STAT_FIELDS[metric]] = float(stat["value"])
    return {cluster: Load(routers_seen=1, **values) for cluster, values in found.items()}


def _cluster_stat(name: str) -> tuple[str | None, str]:
    """"cluster.<cluster>.<stat>" -> (cluster, stat); (None, "") for any other name."""
    parts = name.split(".")
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == "cluster" else (None, "")


def envoy_load(admin_url: str, timeout: float = READ_TIMEOUT_SECONDS) -> dict[str, Load]:
    """One Envoy's busy and queued gauges, counters and latency histogram per cluster, from its admin API
    (no service time: that takes two readings, `ServiceTimes`). Raises OSError or ValueError when the
    admin API does not answer properly."""
    query = urllib.parse.urlencode({"format": "json", "filter": STATS_FILTER, "histogram_buckets": "cumulative"})
    with urllib.request.urlopen(f"{admin_url}/stats?{query}", timeout=timeout) as response:
        payload = json.load(response)
    try:
        return parse_stats(payload)
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"Envoy's /stats is not in the expected shape ({error!r})") from None


def load_document(loads: Mapping[str, Load]) -> dict:
    """What `GET /load` answers: {"clusters": {cluster: {"active", "pending", "latency_ms", "started",
    "server_errors", "latency_buckets": [[upper bound ms, cumulative count], ...]}}}."""
    return {
        "clusters": {
            c: {"active": v.active, "pending": v.pending, "latency_ms": v.latency_ms, "started": v.started,
                "server_errors": v.server_errors, "latency_buckets": [list(b) for b in v.latency_buckets]}
            for c, v in sorted(loads.items())
        }
    }


def loads_from_document(document: object) -> dict[str, Load]:
    """The inverse of `load_document`, for one replica; ValueError for anything else (a NaN or a
    negative gauge would make the autoscaler's arithmetic fail)."""

    def gauge(value: object, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_GAUGE:  # NaN fails too
            raise ValueError(f"/load: {name} must be a number from 0 to {MAX_GAUGE}, got {value!r}")
        return float(value)

    def buckets(value: object) -> tuple[tuple[float, float], ...]:
        if not isinstance(value, list) or not all(isinstance(b, list) and len(b) == 2 for b in value):
            raise ValueError(f"/load: latency_buckets must be a list of [upper bound, count], got {value!r:.80}")
        return tuple((gauge(bound, "a bucket bound"), gauge(count, "a bucket count")) for bound, count in value)

    clusters = document.get("clusters") if isinstance(document, dict) else None
    if not isinstance(clusters, dict) or not all(isinstance(v, dict) for v in clusters.values()):
        raise ValueError("/load: not a {\"clusters\": {name: {...}}} document")
    # started, server_errors and latency_buckets are absent from a replica of an earlier release (rolling update)
    return {
        name: Load(
            gauge(v.get("active"), "active"),
            gauge(v.get("pending"), "pending"),
            1,
            None if v.get("latency_ms") is None else gauge(v["latency_ms"], "latency_ms"),
            gauge(v.get("started", 0), "started"),
            gauge(v.get("server_errors", 0), "server_errors"),
            buckets(v.get("latency_buckets", [])),
        )
        for name, v in clusters.items()
    }


def replica_load(url: str, timeout: float = READ_TIMEOUT_SECONDS) -> dict[str, Load]:
    """One router replica's load from its status server (`url` is its `/load`). Raises OSError or ValueError."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return loads_from_document(json.load(response))


def collect(
    urls: list[str],
    timeout: float = READ_TIMEOUT_SECONDS,
    read: Callable[[str, float], dict[str, Load]] = replica_load,
) -> dict[str, Load]:
    """Sum over router replicas, each read with `read(url, timeout)` (in the cluster: peers' `/load`).
    A replica that does not answer properly is skipped: its load is unknown, not zero. Gauges, counters
    and histogram buckets add; the service time is the slowest replica's."""
    totals: dict[str, Load] = {}
    for url in urls:
        try:
            loads = read(url, timeout)
        except (OSError, ValueError):
            continue
        for cluster, load in loads.items():
            seen = totals.get(cluster, Load())
            latency = max((x for x in (seen.latency_ms, load.latency_ms) if x is not None), default=None)
            totals[cluster] = Load(
                seen.active + load.active, seen.pending + load.pending, seen.routers_seen + 1, latency, seen.started + load.started,
                seen.server_errors + load.server_errors, add_buckets(seen.latency_buckets, load.latency_buckets),
            )
    return totals


def in_flight_per_host(admin_url: str, cluster: str, timeout: float = 0.5) -> dict[str, int]:
    """Per-replica in-flight requests (`/clusters?format=json`), used to drain a replica before stopping it."""
    with urllib.request.urlopen(f"{admin_url}/clusters?format=json", timeout=timeout) as response:
        data = json.load(response)
    result: dict[str, int] = {}
    for status in data.get("cluster_statuses", []):
        if status.get("name") != cluster:
            continue
        for host in status.get("host_statuses", []):
            address = host["address"]["socket_address"]
            active = next((int(s.get("value", 0)) for s in host.get("stats", []) if s.get("name") == "rq_active"), 0)
            result[f"{address['address']}:{address['port_value']}"] = active
    return result
