"""Versioned endpoints: what a weighted route and a mirrored route add over a plain route, and what the
canary loop costs the control plane, on 127.0.0.1 only.

1. Added router latency: one local Envoy with three routes to the same fast upstream (nginx `return 200`):
   a plain service, an endpoint split 90/10 over two versions (weighted clusters), and an endpoint whose
   one version answers while a shadow receives every request as a mirror copy. wrk (one thread, 8
   connections, key auth) runs ROUNDS times against each, interleaved in a rotating order; the medians of
   p50/p99 and the difference to the plain route are reported.
2. Control-plane tick with 100 endpoints x 6 versions (600 services): `ControlPlane.tick()` with a fake
   actuator and a collector returning per-cluster counters that grow each tick (requests, 5xx, latency
   buckets), every endpoint under a rollout, a file state store: the median and p99 of TICKS ticks.

JSON into bench/results/endpoints.json and a table. The machine is shared: compare the rows of one run.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import print_table, write_results
from bench.router import FAST_UPSTREAM, KEY, Nginx, run_wrk, start_router
from local.net import LOOPBACK
from router.autoscaler import AutoscaleSettings
from router.canary import RolloutPolicy
from router.controlplane import ControlPlane, ManagedService
from router.discovery import DiscoveredEndpoint
from router.metrics import Load
from router.spec import Endpoint, EndpointRoute, ServiceRoute, VersionShare
from router.state import FileStateStore

ROUNDS = 3
SECONDS = 3
CONNECTIONS = 8
ENDPOINTS, VERSIONS = 100, 6
TICKS = 30
BODY = b'{"data": [[1, 2, 3]]}'


def _routes(upstream: int) -> tuple[list[ServiceRoute], list[EndpointRoute]]:
    """A plain service and two endpoints, every cluster on the same upstream."""
    replica = (Endpoint(LOOPBACK, upstream),)
    names = ["plain", "split-a", "split-b", "mirror-a", "mirror-shadow"]
    services = [ServiceRoute(name, keys=(KEY,), endpoints=replica, endpoint=None if name == "plain" else name.rsplit("-", 1)[0] + "ed")
                for name in names]
    split = EndpointRoute("splited", keys=(KEY,), versions=(
        VersionShare("split-a", 90, is_default=True, version_type="control"), VersionShare("split-b", 10)))
    mirror = EndpointRoute("mirrored", keys=(KEY,), versions=(
        VersionShare("mirror-a", 100, is_default=True, version_type="control"), VersionShare("mirror-shadow", 0, mirror_percent=100)))
    return services, [split, mirror]


def added_latency(tmp: Path) -> list[dict]:
    with Nginx(tmp, "upstream", FAST_UPSTREAM) as upstream:
        services, endpoints = _routes(upstream.port)
        settings, writer, envoy = start_router(tmp / "envoy", services)
        writer.write(services, settings, endpoints)
        targets = {"plain route": "/api/v1/service/plain/score", "weighted 90/10": "/api/v1/service/splited/score",
                   "mirrored 100 %": "/api/v1/service/mirrored/score"}
        runs: dict[str, list[dict]] = {name: [] for name in targets}
        with envoy:
            for path in targets.values():  # warm up: connections, clusters
                run_wrk(settings.listen_port, path, BODY, CONNECTIONS, 0, tmp, seconds=1, key=KEY)
            names = list(targets)
            for round_ in range(ROUNDS):
                for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                    runs[name].append(run_wrk(settings.listen_port, targets[name], BODY, CONNECTIONS, 0, tmp, seconds=SECONDS, key=KEY))
    rows = []
    for name, results in runs.items():
        rows.append({
            "route": name,
            "p50_ms": round(statistics.median(r["p50_us"] for r in results) / 1000, 3),
            "p99_ms": round(statistics.median(r["p99_us"] for r in results) / 1000, 3),
            "rps": round(statistics.median(r["requests"] / (r["duration_us"] / 1e6) for r in results)),
            "non_2xx": sum(r["non_2xx"] for r in results),
        })
    plain = rows[0]
    for row in rows:
        row["added_p50_ms"] = round(row["p50_ms"] - plain["p50_ms"], 3)
        row["added_p99_ms"] = round(row["p99_ms"] - plain["p99_ms"], 3)
    return rows


class _Actuator:
    def __init__(self) -> None:
        self.replicas: dict[str, int] = {}

    def ready_replicas(self, service: str) -> int:
        return self.replicas.get(service, 1)

    def target(self, service: str) -> int:
        return self.replicas.get(service, 1)

    def scale(self, service: str, replicas: int) -> None:
        self.replicas[service] = replicas


def tick_time(tmp: Path) -> dict:
    """The canary loop and the autoscaler over ENDPOINTS x VERSIONS services, each tick on fresh counters."""
    services, endpoints, clusters = [], [], []
    for e in range(ENDPOINTS):
        names = [f"ep{e:03d}-v{v}" for v in range(VERSIONS)]
        shares = (VersionShare(names[0], 80, is_default=True, version_type="control"), VersionShare(names[1], 10),
                  *(VersionShare(n, 2) for n in names[2:]))
        route = EndpointRoute(f"ep{e:03d}", versions=shares)
        policy = RolloutPolicy(names[0], names[1], (10, 50, 100), 300.0, 0.01, 1.5, 100, tuple((n, 2) for n in names[2:]))
        endpoints.append(DiscoveredEndpoint(route, policy, f"rev{e}", f"models/model-ep{e:03d}"))
        for name in names:
            cluster = ServiceRoute(name).cluster_name
            clusters.append(cluster)
            services.append(ManagedService(name, cluster, AutoscaleSettings(max_replicas=4)))
    reading = {"n": 0}

    def collector(_urls: list[str]) -> dict[str, Load]:
        reading["n"] += 1
        n = reading["n"] * 100.0
        buckets = ((5.0, n * 0.9), (25.0, n * 0.99), (100.0, n))
        return {c: Load(active=1, pending=0, routers_seen=1, started=n, server_errors=0, latency_buckets=buckets) for c in clusters}

    plane = ControlPlane(services, _Actuator(), [], collector=collector, store=FileStateStore(tmp / "router-state.json"))
    plane.set_endpoints(endpoints)
    durations = []
    for _ in range(TICKS):
        started = time.perf_counter()
        plane.tick()
        durations.append(time.perf_counter() - started)
    durations.sort()
    return {"endpoints": ENDPOINTS, "versions_per_endpoint": VERSIONS, "ticks": TICKS,
            "median_ms": round(statistics.median(durations) * 1000, 2), "p99_ms": round(durations[-1] * 1000, 2)}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="aksinf-bench-endpoints-") as tmp:
        latency = added_latency(Path(tmp))
        tick = tick_time(Path(tmp))
    print_table(["route", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "req/s", "non-2xx"],
                [[r["route"], r["p50_ms"], r["p99_ms"], r["added_p50_ms"], r["added_p99_ms"], r["rps"], r["non_2xx"]] for r in latency])
    print(f"\ncontrol-plane tick, {ENDPOINTS} endpoints x {VERSIONS} versions under rollout: "
          f"median {tick['median_ms']} ms, max of {TICKS} {tick['p99_ms']} ms")
    path = write_results("endpoints", {"added_latency": latency, "tick": tick, "connections": CONNECTIONS, "seconds": SECONDS, "rounds": ROUNDS})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
