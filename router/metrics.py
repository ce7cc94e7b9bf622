"""Read busy/queued gauges from every router replica's Envoy admin endpoint and sum them per service."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass

STATS_FILTER = r"^cluster\.model-[^.]*\.upstream_rq_(active|pending_active|time)$"


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


def collect(admin_urls: list[str], timeout: float = 0.5) -> dict[str, Load]:
    """Sum over router replicas; a replica that does not answer is skipped (its load is unknown, not zero)."""
    totals: dict[str, Load] = {}
    query = urllib.parse.urlencode({"format": "json", "filter": STATS_FILTER})
    for url in admin_urls:
        try:
            with urllib.request.urlopen(f"{url}/stats?{query}", timeout=timeout) as response:
                payload = json.load(response)
        except (urllib.error.URLError, OSError, ValueError):
            continue
        latencies = parse_latency(payload)
        for cluster, (active, pending) in parse_stats(payload).items():
            seen = totals.get(cluster, Load())
            latency = max((x for x in (seen.latency_ms, latencies.get(cluster)) if x is not None), default=None)
            totals[cluster] = Load(seen.active + active, seen.pending + pending, seen.routers_seen + 1, latency)
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
