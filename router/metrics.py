"""Load per service cluster: read from one Envoy's admin API, served to peers as JSON, summed by the leader.

Envoy's admin API answers on 127.0.0.1 only, so each router replica reads its own Envoy
(`envoy_load`) and serves the result on its status server (`GET /load`, router/status.py, in the
`load_document` shape); the leader reads every replica's `/load` (`replica_load`) and sums them
(`collect`). Local mode has one Envoy and reads its admin API directly (`collect(..., read=envoy_load)`).
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

STATS_FILTER = r"^cluster\.model-[^.]*\.upstream_rq_(active|pending_active|time)$"
READ_TIMEOUT_SECONDS = 0.5
MAX_GAUGE = 2**53  # larger than any request count; every value up to it is exact as a float


@dataclass(frozen=True)
class Load:
    active: float = 0.0
    pending: float = 0.0
    routers_seen: int = 0
    latency_ms: float | None = None  # median service time seen by the routers (the slowest router's)


def parse_latency(payload: dict) -> dict[str, float]:
    """Median `upstream_rq_time` per cluster from the histograms of `/stats?format=json`."""
    medians: dict[str, float] = {}
    for stat in payload.get("stats", []):
        histograms = stat.get("histograms")
        if not histograms:
            continue
        median = histograms.get("supported_quantiles", []).index(50) if 50 in histograms.get("supported_quantiles", []) else None
        for series in histograms.get("computed_quantiles", []):
            name = series.get("name", "")
            if median is None or not name.endswith(".upstream_rq_time") or ".external." in name:
                continue
            value = series["values"][median].get("cumulative")
            if value:
                medians[name[len("cluster."):].rsplit(".", 1)[0]] = float(value)
    return medians


def parse_stats(payload: dict) -> dict[str, tuple[float, float]]:
    """`/stats?format=json` -> {cluster: (active, pending)}."""
    found: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for stat in payload.get("stats", []):
        name, value = stat.get("name", ""), stat.get("value")
        if value is None or not name.startswith("cluster."):
            continue
        cluster, _, metric = name[len("cluster."):].rpartition(".")
        if metric == "upstream_rq_active":
            found[cluster][0] = float(value)
        elif metric == "upstream_rq_pending_active":
            found[cluster][1] = float(value)
    return {cluster: (v[0], v[1]) for cluster, v in found.items()}


def envoy_load(admin_url: str, timeout: float = READ_TIMEOUT_SECONDS) -> dict[str, Load]:
    """One Envoy's busy and queued gauges and median service time per cluster, from its admin API.
    Raises OSError or ValueError when the admin API does not answer properly."""
    query = urllib.parse.urlencode({"format": "json", "filter": STATS_FILTER})
    with urllib.request.urlopen(f"{admin_url}/stats?{query}", timeout=timeout) as response:
        payload = json.load(response)
    latencies = parse_latency(payload)
    return {cluster: Load(active, pending, 1, latencies.get(cluster)) for cluster, (active, pending) in parse_stats(payload).items()}


def load_document(loads: Mapping[str, Load]) -> dict:
    """What `GET /load` answers: {"clusters": {cluster: {"active", "pending", "latency_ms"}}}."""
    return {"clusters": {c: {"active": v.active, "pending": v.pending, "latency_ms": v.latency_ms} for c, v in sorted(loads.items())}}


def loads_from_document(document: object) -> dict[str, Load]:
    """The inverse of `load_document`, for one replica; ValueError for anything else (a NaN or a
    negative gauge would make the autoscaler's arithmetic fail)."""

    def gauge(value: object, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_GAUGE:  # NaN fails too
            raise ValueError(f"/load: {name} must be a number from 0 to {MAX_GAUGE}, got {value!r}")
        return float(value)

    clusters = document.get("clusters") if isinstance(document, dict) else None
    if not isinstance(clusters, dict) or not all(isinstance(v, dict) for v in clusters.values()):
        raise ValueError("/load: not a {\"clusters\": {name: {...}}} document")
    return {
        name: Load(
            gauge(v.get("active"), "active"),
            gauge(v.get("pending"), "pending"),
            1,
            None if v.get("latency_ms") is None else gauge(v["latency_ms"], "latency_ms"),
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
    A replica that does not answer properly is skipped: its load is unknown, not zero."""
    totals: dict[str, Load] = {}
    for url in urls:
        try:
            loads = read(url, timeout)
        except (OSError, ValueError):
            continue
        for cluster, load in loads.items():
            seen = totals.get(cluster, Load())
            latency = max((x for x in (seen.latency_ms, load.latency_ms) if x is not None), default=None)
            totals[cluster] = Load(seen.active + load.active, seen.pending + load.pending, seen.routers_seen + 1, latency)
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
