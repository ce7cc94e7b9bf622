"""Router benchmarks, each against a baseline measured in the same run.

1. Overhead: direct-to-model vs through Envoy (key auth on) at 1 and 32 connections, and 64 KB POSTs.
2. Scale-up reaction: load start -> a second replica serving (real inference server, local actuator).
3. Config reload time and Envoy memory for 1, 100 and 1,000 services.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

from bench.common import print_table, write_results
from bench.loadgen import run_load
from local.envoy_process import EnvoyProcess
from local.net import LOOPBACK, free_port
from router.envoy_files import ConfigWriter
from router.spec import Endpoint, RouterSettings, ServiceRoute

KEY = "bench-primary-key-0123456789abcdef"
RESPONSE = b'{"result": [1.0]}'


class FastUpstream:
    """A minimal asyncio HTTP/1.1 server (fixed answer) so the model is never the bottleneck."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    async def _handle(self, reader, writer):
        try:
            while True:
                length = 0
                line = await reader.readline()
                if not line:
                    return
                while line not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                    line = await reader.readline()
                if length:
                    await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(RESPONSE), RESPONSE))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    def _serve(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, LOOPBACK, self.port))
        self.ready.set()
        self.loop.run_forever()
        server.close()

    def __enter__(self):
        self.thread.start()
        self.ready.wait(5)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _router(config_dir: Path, routes: list[ServiceRoute]) -> tuple[RouterSettings, ConfigWriter, EnvoyProcess]:
    settings = RouterSettings(config_dir=config_dir, listen_port=free_port(), admin_port=free_port(), access_log_path="/dev/null")
    writer = ConfigWriter(config_dir)
    writer.write(routes, settings)
    return settings, writer, EnvoyProcess(writer.write_bootstrap(settings), settings.admin_port, concurrency=1)


def overhead(tmp: Path) -> list[dict]:
    cases = [("c=1", 1, b"{}"), ("c=32", 32, b"{}"), ("64KB POST c=8", 8, b"x" * 65536)]
    results = []
    with FastUpstream() as upstream:
        route = ServiceRoute("bench", keys=(KEY,), endpoints=(Endpoint(LOOPBACK, upstream.port),), max_concurrent=64, latency_ms=1)
        settings, _, envoy = _router(tmp / "overhead", [route])
        with envoy:
            for label, connections, body in cases:
                direct = run_load(upstream.port, "/score", body=body, connections=connections, seconds=3)
                routed = run_load(settings.listen_port, "/api/v1/service/bench/score", body=body, connections=connections,
                                  headers={"Authorization": f"Bearer {KEY}"}, seconds=3)
                results.append({
                    "case": label, "direct": direct.summary(), "router": routed.summary(),
                    "added_p50_ms": round(routed.percentile(50) - direct.percentile(50), 3),
                    "added_p99_ms": round(routed.percentile(99) - direct.percentile(99), 3),
                })
    return results


def scale_up_reaction(tmp: Path) -> dict:
    from contract.service import load_service
    from local.platform import LocalPlatform

    folder = tmp / "slow"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "weights.bin").write_bytes(b"0")
    (folder / "score.py").write_text("import os, time\ndef init():\n    pass\ndef run(raw):\n    time.sleep(0.2)\n    return {'pid': os.getpid()}\n")
    (folder / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    (folder / "deploymentconfig.json").write_text(json.dumps({
        "computeType": "AKS", "authEnabled": False, "maxQueueWaitMs": 2000,
        "autoScaler": {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 3},
    }))
    service = load_service(folder, "slow")
    with LocalPlatform([service], tmp / "run", listen_port=free_port(), scale_down_window_seconds=5) as platform:
        pids: set = set()
        stop = threading.Event()

        def client():
            import httpx

            with httpx.Client(timeout=10) as http:
                for _ in range(2000):  # bounded in count as well as by the 20 s wall clock below
                    if stop.is_set():
                        break
                    answer = http.post(f"{platform.url}/api/v1/service/slow/score", content=b"{}")
                    if answer.status_code == 200:
                        pids.add(answer.json()["pid"])
                    else:
                        time.sleep(0.1)

        started = time.monotonic()
        clients = [threading.Thread(target=client) for _ in range(3)]
        for c in clients:
            c.start()
        decided = served = None
        while time.monotonic() - started < 20 and served is None:
            if decided is None and platform.actuator.target("slow") > 1:
                decided = time.monotonic() - started
            if len(pids) > 1:
                served = time.monotonic() - started
            time.sleep(0.05)
        stop.set()
        for c in clients:
            c.join()
    return {"decision_s": round(decided or -1, 2), "new_replica_serving_s": round(served or -1, 2),
            "note": "includes the inference server's start-up (init) time of the new replica"}


def reload_and_memory(tmp: Path) -> list[dict]:
    results = []
    with FastUpstream() as upstream:
        endpoint = (Endpoint(LOOPBACK, upstream.port),)
        settings, writer, envoy = _router(tmp / "reload", [ServiceRoute("svc-0", auth="none", endpoints=endpoint)])
        with envoy:
            for count in (1, 100, 1000):
                routes = [ServiceRoute(f"svc-{i}", auth="none", endpoints=endpoint) for i in range(count)]
                started = time.perf_counter()
                writer.write(routes, settings)
                written = time.perf_counter() - started
                last = f"http://{LOOPBACK}:{settings.listen_port}/api/v1/service/svc-{count - 1}/score"
                while not _answers(last) and time.perf_counter() - started < 60:
                    time.sleep(0.01)
                routable = time.perf_counter() - started
                time.sleep(1)
                results.append({"services": count, "write_s": round(written, 3), "routable_s": round(routable, 3),
                                "envoy_rss_mb": round(envoy.rss_bytes() / 2**20, 1)})
    return results


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.post(url, content=b"{}").status_code == 200
    except httpx.HTTPError:  # a connection reset while listeners/clusters swap counts as "not yet"
        return False


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="aksinf-bench-") as tmp:
        tmp = Path(tmp)
        results = {"overhead": overhead(tmp), "scale_up": scale_up_reaction(tmp), "reload": reload_and_memory(tmp)}
    print_table(
        ["case", "direct rps", "router rps", "direct p50", "router p50", "direct p99", "router p99"],
        [[r["case"], r["direct"]["rps"], r["router"]["rps"], r["direct"]["p50_ms"], r["router"]["p50_ms"], r["direct"]["p99_ms"], r["router"]["p99_ms"]] for r in results["overhead"]],
    )
    print(f"\nscale-up: decision after {results['scale_up']['decision_s']} s, new replica serving after {results['scale_up']['new_replica_serving_s']} s")
    print()
    print_table(["services", "write s", "routable s", "envoy RSS MB"], [[r["services"], r["write_s"], r["routable_s"], r["envoy_rss_mb"]] for r in results["reload"]])
    write_results("router", results)
    return results


if __name__ == "__main__":
    main()
