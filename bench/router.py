"""Router benchmarks, each against baselines measured in the same run, on 127.0.0.1 only.

1. Proxy cost, with a compiled load generator (Debian's `wrk`, one thread): requests straight to the
   upstream (`direct`), through the router (`router`: Envoy with this project's config as a cluster
   runs it with auth configured: a key service, so the api_key filter checks every request and the
   token filters (jwt_authn, RBAC) sit in the chain, skipped on the key route as in production; the
   request-id guard, the body buffer and its JSON access log to a file) and through a reference proxy
   (`nginx`: `proxy_pass` with upstream keep-alive, an API-key check, a request id and a JSON access
   log, buffered as Envoy's is). One Envoy worker (`--concurrency 1`) against one nginx worker: like for
   like, and on 2 shared cores a second Envoy worker only contends with wrk and the upstream.
   Upstreams: a fast one (nginx `return 200`; the router's per-replica cap raised to FAST_UPSTREAM_CAP,
   above the largest case's connections, since nginx's reference caps nothing and the cap's queue is
   not what this measures) and the real sample model server (one worker, one server per target; the
   sample's `maxConcurrentRequestsPerContainer` 1 and `maxQueueWaitMs` 500 on the router). The model
   server answers `Connection: close` (local/model_server.py says why), so both proxies open a
   connection per request to it. 1, 8, 32 and 128 connections closed-loop, and 32 connections paced
   (each waits PACE_MS between requests). Every case runs ROUNDS times with the three targets
   interleaved in a rotating order; the medians are reported, with the CPU time of each proxy per
   request (from /proc) and non-2xx answers counted apart.
2. Scale-up reaction: load start -> a second replica serving (real inference server, local actuator).
3. Reloads at 1, 100 and 1,000 services: time until one added service is routable, and when Envoy applied
   the cluster file and then the route file on the way (its own `update_time` gauges), the CPU of a
   control-plane write with nothing changed and with one service added, and Envoy's memory per service.
4. Replica recovery (local mode): the only replica SIGKILLed -> the service answers again.
5. Envoy's floor: Envoy with none of this project's configuration (a route and the router filter) against
   nginx doing the same, at 1 and 32 connections: proxying over kept-alive upstream connections, and proxying to an upstream that closes every connection (as the model server does).
   The router cannot beat its own data plane, so this ratio bounds every goal stated against nginx.

`make bench` installs wrk and nginx when missing; the machine is shared, so numbers move between runs:
compare the columns of one run, not runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from bench.common import print_table, write_results
from local.envoy_process import EnvoyProcess
from local.net import LOOPBACK, free_port, wait_http_ok
from router.envoy_files import ConfigWriter
from router.spec import Endpoint, JwtSettings, RouterSettings, ServiceRoute

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "models" / "diabetes"
KEY = "bench-primary-key-0123456789abcdef"
PREFIX = "/api/v1/service/bench/"
SECONDS = 3  # per wrk run
ROUNDS = 3
PACE_MS = 8  # paced case: 32 connections, each waiting 8 ms between requests (about 4k requests/s)
CASES = [("c=1", 1, 0), ("c=8", 8, 0), ("c=32", 32, 0), ("c=128", 128, 0), ("c=32 paced", 32, PACE_MS)]
# maxConcurrentRequestsPerContainer of the fast upstream's route: above every case's connections, so the
# router never queues in front of an upstream that has no such limit (as nginx's reference proxy does not).
FAST_UPSTREAM_CAP = 1024
# The token settings of the benchmarked router: the production filter chain with auth configured.
ISSUER, AUDIENCE = "https://login.microsoftonline.com/bench/v2.0", "api://aks-inference-bench"
SERVICE_COUNTS = (1, 100, 1000)
ADDS_PER_COUNT = 3


# --------------------------------------------------------------------------- tools


def _tool(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin")
    if not found:
        raise SystemExit(f"bench.router needs `{name}` (Debian package {name}): run `make bench`, which installs it")
    return found


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes (all their threads) so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


class Nginx:
    """One nginx (master + 1 worker) in the foreground, on `server` (an http{} server block), logs in `workdir`."""

    def __init__(self, workdir: Path, name: str, server: str):
        self.workdir = workdir / f"nginx-{name}"
        self.workdir.mkdir(parents=True)
        self.port = free_port()
        # As root the workers would switch to `nobody`, which cannot write here.
        user = "user root;" if os.geteuid() == 0 else ""
        temp = "\n".join(f"  {kind}_temp_path {self.workdir}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = f"""{user}
worker_processes 1;
daemon off;
pid {self.workdir}/nginx.pid;
error_log {self.workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp}
  keepalive_requests 1000000;
  {server.replace("PORT", str(self.port)).replace("WORKDIR", str(self.workdir))}
}}
"""
        (self.workdir / "nginx.conf").write_text(conf)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Nginx:
        log = open(self.workdir / "stderr.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen([_tool("nginx"), "-p", str(self.workdir), "-e", str(self.workdir / "error.log"), "-c", str(self.workdir / "nginx.conf")],
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        _wait_listening(self.port, self.process)
        return self

    def __exit__(self, *exc) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return [self.process.pid, *map(int, children)]


def _wait_listening(port: int, process: subprocess.Popen, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {LOOPBACK}:{port} after {timeout}s")


FAST_UPSTREAM = """server {
    listen 127.0.0.1:PORT;
    location / { default_type application/json; return 200 '{"result": [1.0]}'; }
  }"""

# The reference proxy: what the router does for a keyed service, as an nginx config would do it.
REFERENCE_PROXY = """log_format aksinf escape=json '{"time":"$time_iso8601","request_id":"$request_id","method":"$request_method",'
    '"path":"$request_uri","status":"$status","duration_ms":"$request_time","upstream_ms":"$upstream_response_time",'
    '"replica":"$upstream_addr","bytes_in":"$request_length","bytes_out":"$bytes_sent"}';
  upstream model { server 127.0.0.1:UPSTREAM; keepalive 256; }
  server {
    listen 127.0.0.1:PORT;
    access_log WORKDIR/access.log aksinf buffer=64k flush=500ms;
    location PREFIX {
      if ($http_authorization != "Bearer KEY") { return 401; }
      proxy_pass http://model/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "";
      proxy_set_header X-Request-Id $request_id;
    }
  }"""


def run_wrk(port: int, path: str, body: bytes, connections: int, pace_ms: int, workdir: Path, seconds: float = SECONDS,
         key: str | None = None) -> dict:
    """One wrk run (1 thread) against 127.0.0.1:port; latency in microseconds, from wrk's own histogram."""
    script = workdir / f"wrk-{port}-{connections}-{pace_ms}.lua"
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"\n' if key else ""
    pace = f"function delay() return {pace_ms} end\n" if pace_ms else ""
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\nwrk.headers["Content-Type"] = "application/json"\n{auth}{pace}'
        "function done(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        '  io.write(string.format("WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"non_2xx\\":%d,\\"socket_errors\\":%d,'
        '\\"p50_us\\":%d,\\"p99_us\\":%d,\\"mean_us\\":%.1f}\\n", summary.requests, summary.duration, e.status,'
        " e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99), latency.mean))\n"
        "end\n"
    )
    assert LOOPBACK.startswith("127.")
    argv = [_tool("wrk"), "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), f"http://{LOOPBACK}:{port}{path}"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("WRKJSON "))
    return json.loads(line.removeprefix("WRKJSON "))


# --------------------------------------------------------------------------- 1. proxy cost


def _jwks(directory: Path) -> JwtSettings:
    """Token validation against a local JWKS holding one fresh RSA key (no token is sent: key routes skip it)."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import rsa

    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers()
    b64 = lambda number: base64.urlsafe_b64encode(number.to_bytes((number.bit_length() + 7) // 8, "big")).rstrip(b"=").decode()  # noqa: E731
    path = directory / "jwks.json"
    path.write_text(json.dumps({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "bench", "n": b64(public.n), "e": b64(public.e)}]}))
    return JwtSettings(ISSUER, (AUDIENCE,), local_jwks_path=str(path))


def start_router(config_dir: Path, routes: list[ServiceRoute], access_log: str = "/dev/null", jwt: JwtSettings | None = None) -> tuple[RouterSettings, ConfigWriter, EnvoyProcess]:
    settings = RouterSettings(config_dir=config_dir, listen_port=free_port(), admin_port=free_port(), access_log_path=access_log, jwt=jwt)
    writer = ConfigWriter(config_dir)
    writer.write(routes, settings)
    return settings, writer, EnvoyProcess(writer.write_bootstrap(settings), settings.admin_port, concurrency=1)


def _summary(runs: list[dict], cpu: list[float]) -> dict:
    median = lambda values: round(statistics.median(values), 3)  # noqa: E731
    return {
        "ok_rps": median([(r["requests"] - r["non_2xx"]) / (r["duration_us"] / 1e6) for r in runs]),
        "p50_ms": median([r["p50_us"] / 1000 for r in runs]),
        "p99_ms": median([r["p99_us"] / 1000 for r in runs]),
        "non_2xx": sum(r["non_2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "requests": sum(r["requests"] for r in runs),
        **({"cpu_us_per_request": median(cpu)} if cpu else {}),
    }


def proxy_cost(tmp: Path, upstreams: dict[str, int], name: str, route: ServiceRoute, body: bytes) -> list[dict]:
    """The CASES against direct, router and nginx, interleaved; one summary per case. `upstreams`: the
    upstream port of each target (a one-worker model server gets one per target: an idle keep-alive
    connection a proxy holds would block the worker for the others)."""
    route = replace(route, keys=(KEY,), endpoints=(Endpoint(LOOPBACK, upstreams["router"]),))
    workdir = tmp / name
    workdir.mkdir(parents=True)
    settings, _, envoy = start_router(workdir / "envoy", [route], access_log=str(workdir / "envoy-access.log"), jwt=_jwks(workdir))
    proxy = Nginx(workdir, "proxy", REFERENCE_PROXY.replace("UPSTREAM", str(upstreams["nginx"])).replace("PREFIX", PREFIX).replace("KEY", KEY))
    with envoy, proxy:
        targets = {
            "direct": (upstreams["direct"], "/score", None, list),
            "router": (settings.listen_port, f"{PREFIX}score", KEY, lambda: [envoy.process.pid]),
            "nginx": (proxy.port, f"{PREFIX}score", KEY, proxy.pids),
        }
        for port, path, key, _ in targets.values():  # warm-up: connections, caches, the first stats flush
            run_wrk(port, path, body, 8, 0, workdir, seconds=1, key=key)
        runs: dict[tuple[str, str], list[dict]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        order = list(targets)
        for round_ in range(ROUNDS):
            for index, (label, connections, pace_ms) in enumerate(CASES):
                shift = (round_ + index) % len(order)
                for target in order[shift:] + order[:shift]:
                    port, path, key, pids = targets[target]
                    before = _cpu_seconds(pids())
                    run = run_wrk(port, path, body, connections, pace_ms, workdir, key=key)
                    runs.setdefault((label, target), []).append(run)
                    if pids():
                        cpu.setdefault((label, target), []).append((_cpu_seconds(pids()) - before) / max(1, run["requests"]) * 1e6)
    results = []
    for label, connections, pace_ms in CASES:
        summary = {target: _summary(runs[(label, target)], cpu.get((label, target), [])) for target in targets}
        direct, router, nginx = summary["direct"], summary["router"], summary["nginx"]
        results.append({
            "upstream": name, "case": label, "connections": connections, "pace_ms": pace_ms, **summary,
            "router_vs_nginx_rps": round(router["ok_rps"] / nginx["ok_rps"], 2) if nginx["ok_rps"] else None,
            "router_added_p50_ms": round(router["p50_ms"] - direct["p50_ms"], 3),
            "nginx_added_p50_ms": round(nginx["p50_ms"] - direct["p50_ms"], 3),
            "router_added_p99_ms": round(router["p99_ms"] - direct["p99_ms"], 3),
            "nginx_added_p99_ms": round(nginx["p99_ms"] - direct["p99_ms"], 3),
        })
    return results


def sample_model(tmp: Path, name: str) -> tuple[int, subprocess.Popen]:
    """The real sample model server (azureml-inference-server-http, one worker) on a free port."""
    from local.model_server import command

    port = free_port()
    log = open(tmp / f"sample-model-{name}.log", "ab")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(command(SAMPLE / "score.py", SAMPLE / "model", port, scoring_timeout_ms=5000, service_name="diabetes"),
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    wait_http_ok(f"http://{LOOPBACK}:{port}/", 90, alive=lambda: process.poll() is None)
    return port, process


# --------------------------------------------------------------------------- 5. Envoy's floor

# An nginx upstream that closes every connection after its answer, as the inference server does.
CLOSING_UPSTREAM = FAST_UPSTREAM.replace("listen 127.0.0.1:PORT;", "listen 127.0.0.1:PORT;\n    keepalive_timeout 0;")
# nginx doing no more than the bare Envoy below: pass the request on over kept-alive upstream connections.
BARE_PROXY = """upstream up { server 127.0.0.1:UPSTREAM; keepalive 256; }
  server {
    listen 127.0.0.1:PORT;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }"""
FLOOR_CASES = [("c=1", 1), ("c=32", 32)]


def _bare_envoy_bootstrap(admin_port: int, listeners: dict[str, tuple[int, int]]) -> dict:
    """Envoy with nothing of this project's: per listener (port, upstream port), an HTTP connection manager
    with one route to that upstream and the router filter."""
    t = "type.googleapis.com/envoy.extensions."
    def listener(name: str, port: int) -> dict:
        hcm = {"@type": t + "filters.network.http_connection_manager.v3.HttpConnectionManager", "stat_prefix": name,
               "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": name}}]}]},
               "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": t + "filters.http.router.v3.Router"}}]}
        return {"name": name, "address": {"socket_address": {"address": LOOPBACK, "port_value": port}},
                "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]}
    clusters = [{"name": name, "connect_timeout": "1s", "load_assignment": {"cluster_name": name, "endpoints": [
        {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": LOOPBACK, "port_value": upstream}}}}]}]}}
        for name, (_, upstream) in listeners.items()]
    return {"admin": {"address": {"socket_address": {"address": LOOPBACK, "port_value": admin_port}}},
            "static_resources": {"listeners": [listener(name, port) for name, (port, _) in listeners.items()],
                                 "clusters": clusters}}


def envoy_floor(tmp: Path, fast_port: int) -> list[dict]:
    """What Envoy costs with none of this project's configuration, against nginx doing the same, in one
    run: proxying to the fast upstream over kept-alive connections, and proxying to an upstream that
    closes every connection (as the inference server does). Its ratio to nginx bounds what any router
    configuration can reach. (Not compared: Envoy answering by itself, because a `direct_response` to a
    request with a body closes the client's connection, so the load generator would measure reconnects.)"""
    workdir = tmp / "floor"
    workdir.mkdir()
    with Nginx(workdir, "closing-upstream", CLOSING_UPSTREAM) as closing:
        nginxes = {"proxy": Nginx(workdir, "proxy", BARE_PROXY.replace("UPSTREAM", str(fast_port))),
                   "proxy, upstream closes": Nginx(workdir, "proxy-closing", BARE_PROXY.replace("UPSTREAM", str(closing.port)))}
        upstreams = {"proxy": fast_port, "proxy, upstream closes": closing.port}
        listeners = {name.replace(", ", "-").replace(" ", "-"): (free_port(), upstream) for name, upstream in upstreams.items()}
        bootstrap = workdir / "bare-envoy.json"
        admin_port = free_port()
        bootstrap.write_text(json.dumps(_bare_envoy_bootstrap(admin_port, listeners)))
        envoy_ports = dict(zip(upstreams, (port for port, _ in listeners.values()), strict=True))
        with EnvoyProcess(bootstrap, admin_port, concurrency=1) as envoy, nginxes["proxy"], nginxes["proxy, upstream closes"]:
            body = b'{"data": [[1.0]]}'
            for kind in upstreams:  # warm-up
                run_wrk(envoy_ports[kind], "/", body, 8, 0, workdir, seconds=1)
                run_wrk(nginxes[kind].port, "/", body, 8, 0, workdir, seconds=1)
            runs: dict[tuple[str, str, str], list[dict]] = {}
            cpu: dict[tuple[str, str, str], list[float]] = {}
            for round_ in range(ROUNDS):
                for kind in upstreams:
                    for label, connections in FLOOR_CASES:
                        targets = [("envoy", envoy_ports[kind], lambda: [envoy.process.pid]), ("nginx", nginxes[kind].port, nginxes[kind].pids)]
                        for proxy, port, pids in targets[round_ % 2:] + targets[:round_ % 2]:
                            before = _cpu_seconds(pids())
                            run = run_wrk(port, "/", body, connections, 0, workdir)
                            runs.setdefault((kind, label, proxy), []).append(run)
                            cpu.setdefault((kind, label, proxy), []).append((_cpu_seconds(pids()) - before) / max(1, run["requests"]) * 1e6)
    results = []
    for kind in upstreams:
        for label, connections in FLOOR_CASES:
            envoy_, nginx_ = (_summary(runs[(kind, label, proxy)], cpu[(kind, label, proxy)]) for proxy in ("envoy", "nginx"))
            results.append({"kind": kind, "case": label, "connections": connections, "envoy": envoy_, "nginx": nginx_,
                            "envoy_vs_nginx_rps": round(envoy_["ok_rps"] / nginx_["ok_rps"], 2) if nginx_["ok_rps"] else None,
                            "envoy_vs_nginx_cpu": round(envoy_["cpu_us_per_request"] / nginx_["cpu_us_per_request"], 1)
                            if nginx_["cpu_us_per_request"] else None})
    return results


# --------------------------------------------------------------------------- 2. scale-up


def _service_folder(folder: Path, score: str, deployment: dict):
    from contract.service import load_service

    (folder / "model").mkdir(parents=True)
    (folder / "model" / "weights.bin").write_bytes(b"0")
    (folder / "score.py").write_text(score)
    (folder / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    (folder / "deploymentconfig.json").write_text(json.dumps({"computeType": "AKS", "authEnabled": False, **deployment}))
    return load_service(folder, folder.name)


def scale_up_reaction(tmp: Path) -> dict:
    from local.platform import LocalPlatform

    score = "import os, time\ndef init():\n    pass\ndef run(raw):\n    time.sleep(0.2)\n    return {'pid': os.getpid()}\n"
    service = _service_folder(tmp / "slow", score, {
        "maxQueueWaitMs": 2000, "autoScaler": {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 3}})
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


# --------------------------------------------------------------------------- 3. reloads


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.post(url, content=b"{}").status_code == 200
    except httpx.HTTPError:  # a connection reset while listeners/clusters swap counts as "not yet"
        return False


def _routable(settings: RouterSettings, name: str, started: float, limit: float = 60) -> float:
    url = f"http://{LOOPBACK}:{settings.listen_port}/api/v1/service/{name}/score"
    while not _answers(url) and time.perf_counter() - started < limit:
        time.sleep(0.005)
    return time.perf_counter() - started


def _cpu_of(call) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


def _applied_after(envoy: EnvoyProcess, stat: str, since_epoch: float) -> float:
    """Seconds from `since_epoch` until Envoy last applied a config file (its `update_time` gauge, epoch ms)."""
    return envoy.stats(f"^{stat}$").get(stat, 0) / 1000 - since_epoch


def reloads(tmp: Path, upstream_port: int) -> list[dict]:
    """One Envoy grown to 1, 100, 1,000 services; at each size ADDS_PER_COUNT services are added one at a time."""
    results = []
    endpoint = (Endpoint(LOOPBACK, upstream_port),)
    make = lambda name: ServiceRoute(name, auth="none", endpoints=endpoint)  # noqa: E731
    settings, writer, envoy = start_router(tmp / "reload", [make("svc-0")])
    with envoy:
        baseline_rss = envoy.rss_bytes()
        added = 0
        for count in SERVICE_COUNTS:
            routes = [make(f"svc-{i}") for i in range(count)] + [make(f"add-{i}") for i in range(added)]
            started = time.perf_counter()
            load_cpu = _cpu_of(lambda routes=routes: writer.write(routes, settings))
            load_s = _routable(settings, f"svc-{count - 1}", started)
            unchanged_ms = [1000 * _cpu_of(lambda routes=routes: writer.write(list(routes), settings)) for _ in range(5)]
            add_s, add_cpu_ms, add_cds_s, add_rds_s = [], [], [], []
            for _ in range(ADDS_PER_COUNT):
                routes = routes + [make(f"add-{added}")]
                started, since_epoch = time.perf_counter(), time.time()
                add_cpu_ms.append(1000 * _cpu_of(lambda routes=routes: writer.write(routes, settings)))
                add_s.append(_routable(settings, f"add-{added}", started))
                # Where the time went: Envoy's own record of when it applied the cluster file, then the route file.
                add_cds_s.append(_applied_after(envoy, "cluster_manager.cds.update_time", since_epoch))
                add_rds_s.append(_applied_after(envoy, "http.router.rds.models.update_time", since_epoch))
                added += 1
            time.sleep(1)
            rss = envoy.rss_bytes()
            results.append({
                "services": len(routes), "load_write_cpu_s": round(load_cpu, 3), "load_routable_s": round(load_s, 3),
                "unchanged_tick_cpu_ms": round(statistics.median(unchanged_ms), 3),
                "add_one_write_cpu_ms": round(statistics.median(add_cpu_ms), 1),
                "add_one_cds_applied_s": round(statistics.median(add_cds_s), 3),
                "add_one_rds_applied_s": round(statistics.median(add_rds_s), 3),
                "add_one_routable_s": round(statistics.median(add_s), 3),
                "envoy_rss_mb": round(rss / 2**20, 1),
                "envoy_kb_per_service": round((rss - baseline_rss) / 1024 / max(1, len(routes) - 1), 1),
            })
    return results


# --------------------------------------------------------------------------- 4. replica recovery


def replica_recovery(tmp: Path) -> dict:
    import httpx

    from local.platform import LocalPlatform

    score = "import os\ndef init():\n    pass\ndef run(raw):\n    return {'pid': os.getpid()}\n"
    service = _service_folder(tmp / "solo", score, {"numReplicas": 1})
    with LocalPlatform([service], tmp / "run-recovery", purpose="DevTest", listen_port=free_port()) as platform:
        url = f"{platform.url}/api/v1/service/solo/score"
        first = httpx.post(url, content=b"{}", timeout=10).json()["pid"]
        [replica] = platform.actuator.services["solo"].replicas
        os.killpg(replica.process.pid, signal.SIGKILL)
        started = time.monotonic()
        statuses: dict[int, int] = {}
        with httpx.Client(timeout=10) as http:
            while time.monotonic() - started < 60:
                answer = http.post(url, content=b"{}")
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                if answer.status_code == 200 and answer.json()["pid"] != first:
                    break
                time.sleep(0.02)
        return {"answered_again_s": round(time.monotonic() - started, 2), "statuses_meanwhile": {str(k): v for k, v in sorted(statuses.items())},
                "note": "includes the inference server's start-up (init) time of the replacement"}


# --------------------------------------------------------------------------- report


def main() -> dict:
    with tempfile.TemporaryDirectory(prefix="aksinf-bench-") as tmp:
        tmp = Path(tmp)
        fast = Nginx(tmp, "upstream", FAST_UPSTREAM)
        with fast:
            shared = dict.fromkeys(("direct", "router", "nginx"), fast.port)
            results = {"proxy": proxy_cost(tmp, shared, "fast", ServiceRoute("bench", max_concurrent=FAST_UPSTREAM_CAP), b'{"data": [[1.0]]}')}
            results["reload"] = reloads(tmp, fast.port)
            results["floor"] = envoy_floor(tmp, fast.port)
        models = {target: sample_model(tmp, target) for target in ("direct", "router", "nginx")}
        try:
            sample_route = ServiceRoute("bench", max_concurrent=1, max_queue_wait_ms=500, scoring_timeout_ms=5000)
            ports = {target: port for target, (port, _) in models.items()}
            results["proxy"] += proxy_cost(tmp, ports, "sample-model", sample_route, (SAMPLE / "sample-request.json").read_bytes())
        finally:
            for _, process in models.values():
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(20)
        results["scale_up"] = scale_up_reaction(tmp)
        results["recovery"] = replica_recovery(tmp)
    print_table(
        ["upstream", "case", "direct rps", "router rps", "nginx rps", "router/nginx", "router +p50 ms", "nginx +p50 ms",
         "router +p99 ms", "nginx +p99 ms", "router CPU µs/req", "nginx CPU µs/req", "router non-2xx"],
        [[r["upstream"], r["case"], r["direct"]["ok_rps"], r["router"]["ok_rps"], r["nginx"]["ok_rps"], r["router_vs_nginx_rps"],
          r["router_added_p50_ms"], r["nginx_added_p50_ms"], r["router_added_p99_ms"], r["nginx_added_p99_ms"],
          r["router"].get("cpu_us_per_request"), r["nginx"].get("cpu_us_per_request"), r["router"]["non_2xx"]] for r in results["proxy"]],
    )
    print()
    print_table(["services", "routable after load s", "unchanged tick CPU ms", "add one: write CPU ms", "add one: clusters applied s",
                 "add one: routes applied s", "add one: routable s", "Envoy RSS MB", "Envoy KB/service"],
                [[r["services"], r["load_routable_s"], r["unchanged_tick_cpu_ms"], r["add_one_write_cpu_ms"], r["add_one_cds_applied_s"],
                  r["add_one_rds_applied_s"], r["add_one_routable_s"], r["envoy_rss_mb"], r["envoy_kb_per_service"]] for r in results["reload"]])
    print()
    print_table(["bare", "case", "Envoy rps", "nginx rps", "Envoy/nginx rps", "Envoy p50 ms", "nginx p50 ms", "Envoy CPU µs/req",
                 "nginx CPU µs/req", "Envoy/nginx CPU"],
                [[r["kind"], r["case"], r["envoy"]["ok_rps"], r["nginx"]["ok_rps"], r["envoy_vs_nginx_rps"], r["envoy"]["p50_ms"],
                  r["nginx"]["p50_ms"], r["envoy"]["cpu_us_per_request"], r["nginx"]["cpu_us_per_request"], r["envoy_vs_nginx_cpu"]]
                 for r in results["floor"]])
    print(f"\nscale-up: decision after {results['scale_up']['decision_s']} s, new replica serving after {results['scale_up']['new_replica_serving_s']} s")
    print(f"recovery: only replica SIGKILLed -> answered again after {results['recovery']['answered_again_s']} s, "
          f"answers meanwhile {results['recovery']['statuses_meanwhile']}")
    results["settings"] = {"wrk_seconds": SECONDS, "rounds": ROUNDS, "pace_ms": PACE_MS, "envoy_concurrency": 1, "nginx_workers": 1, "wrk_threads": 1,
                           "router_auth": "key route; jwt_authn and RBAC in the chain", "fast_upstream_cap": FAST_UPSTREAM_CAP}
    write_results("router", results)
    return results


if __name__ == "__main__":
    main()
