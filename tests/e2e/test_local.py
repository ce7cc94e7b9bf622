"""End to end on 127.0.0.1: real Envoy, real azureml-inference-server-http processes, the real control loop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from contract.service import load_service
from local.net import free_port
from local.platform import LocalPlatform
from router.metrics import in_flight_per_host

SLOW_SCRIPT = '''
import os, time
def init():
    assert os.path.isdir(os.environ["AZUREML_MODEL_DIR"])
def run(raw_data):
    time.sleep(float(os.environ.get("SLOW_SECONDS", "0.2")))
    return {"pid": os.getpid()}
'''


@pytest.fixture
def slow_service(tmp_path):
    def make(delay: float = 0.2, max_replicas: int = 3):
        folder = tmp_path / f"slow-{int(delay * 1000)}"
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "weights.bin").write_bytes(b"\0" * 16)
        (folder / "score.py").write_text(SLOW_SCRIPT.replace('"0.2"', f'"{delay}"'))
        (folder / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
        (folder / "deploymentconfig.json").write_text(
            json.dumps(
                {
                    "computeType": "AKS",
                    "autoScaler": {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": max_replicas, "targetUtilization": 70},
                    "authEnabled": False,
                    "scoringTimeoutMs": 10000,
                    "maxConcurrentRequestsPerContainer": 1,
                    "maxQueueWaitMs": 2000,
                }
            )
        )
        return load_service(folder, "slow")

    return make


def _load(url: str, clients: int, seconds: float, max_requests: int = 600) -> list[int]:
    """Bounded load: `clients` sequential loops (backing off 0.1 s after a 503, as clients should),
    stopping at `seconds` or `max_requests` in total."""
    statuses: list[int] = []
    deadline = time.monotonic() + seconds

    def loop():
        with httpx.Client(timeout=15) as client:
            while time.monotonic() < deadline and len(statuses) < max_requests:
                statuses.append(client.post(url, content=b"{}").status_code)
                if statuses[-1] != 200:
                    time.sleep(0.1)

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(loop) for _ in range(clients)]:
            future.result()
    return statuses


def _wait(predicate, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


def test_load_scales_up_within_seconds_and_back_down_after_the_window(slow_service, tmp_path):
    service = slow_service(delay=0.2, max_replicas=3)
    with LocalPlatform([service], tmp_path / "run", listen_port=free_port(), scale_down_window_seconds=3) as platform:
        url = f"{platform.url}/api/v1/service/slow/score"
        assert platform.actuator.ready_replicas("slow") == 1
        result: dict = {}
        loader = threading.Thread(target=lambda: result.update(statuses=_load(url, clients=3, seconds=6)))
        loader.start()
        reaction = _wait(lambda: platform.actuator.ready_replicas("slow") >= 2, timeout=6)
        loader.join()
        assert reaction < 6
        assert result["statuses"] and set(result["statuses"]) <= {200, 503}
        assert result["statuses"].count(200) > len(result["statuses"]) / 2
        pids = {httpx.post(url, content=b"{}", timeout=10).json()["pid"] for _ in range(6)}
        assert len(pids) >= 2  # requests really spread over the new replicas
        _wait(lambda: platform.actuator.ready_replicas("slow") == 1, timeout=12)
        assert platform.control_plane.history["slow"][-1][1] == 1
        metrics = httpx.get(f"http://127.0.0.1:{platform.metrics_port}/metrics").text
        assert 'aksinf_scaling_decisions_total{direction="up",service="slow"}' in metrics
        # The same status server as in a pod: ready once Envoy serves every file as last written (milliseconds).
        _wait(lambda: httpx.get(f"http://127.0.0.1:{platform.metrics_port}/ready").json() == {"ready": True}, timeout=5)


def test_scale_down_drains_in_flight_requests(slow_service, tmp_path):
    service = slow_service(delay=0.5, max_replicas=3)
    with LocalPlatform([service], tmp_path / "run", listen_port=free_port(), scale_down_window_seconds=60) as platform:
        url = f"{platform.url}/api/v1/service/slow/score"
        platform.stop_control_plane()  # we drive the actuator directly
        platform.actuator.scale("slow", 3)
        _wait(lambda: [platform.actuator.reconcile(), platform.actuator.ready_replicas("slow")][1] == 3, timeout=30)
        cluster = platform.actuator.routes()[0].cluster_name
        _wait(lambda: len(in_flight_per_host(platform.admin_url, cluster)) == 3, timeout=10)  # Envoy loaded all three
        # Three requests in flight, one per replica; then scale down to one while they run.
        with ThreadPoolExecutor(3) as pool:
            in_flight = [pool.submit(httpx.post, url, content=b"{}", timeout=15) for _ in range(3)]
            # Scale down only once Envoy holds all three (a fixed sleep is too short on a loaded machine).
            _wait(lambda: sum(in_flight_per_host(platform.admin_url, cluster).values()) == 3, timeout=5)
            platform.actuator.scale("slow", 1)
            statuses = [f.result().status_code for f in in_flight]
        assert statuses == [200, 200, 200]
        for drain in platform.actuator.draining:
            drain.join(20)
        removed = [p for p in os.listdir(tmp_path / "run" / "logs")]
        assert len(removed) == 3
        assert platform.actuator.ready_replicas("slow") == 1


def test_killing_the_control_plane_mid_load_fails_no_request(slow_service, tmp_path):
    service = slow_service(delay=0.1, max_replicas=3)
    with LocalPlatform([service], tmp_path / "run", listen_port=free_port(), scale_down_window_seconds=60) as platform:
        url = f"{platform.url}/api/v1/service/slow/score"
        result: dict = {}
        loader = threading.Thread(target=lambda: result.update(statuses=_load(url, clients=1, seconds=3, max_requests=100)))
        loader.start()
        time.sleep(1)
        platform.stop_control_plane()  # mid-load: Envoy keeps serving the last config it loaded
        assert not platform.loop.is_alive()
        loader.join()
        assert result["statuses"] and set(result["statuses"]) == {200}


def test_aksinf_serve_answers_with_the_printed_key_and_leaves_nothing(tmp_path):
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "aksinf", "serve", "--port", str(port), "--run-dir", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = serve.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(output)
        key = re.search(r"primary key\s+(\S+)", text).group(1)
        curl = re.search(r"try\s+(curl .*)", text).group(1)
        assert f"http://127.0.0.1:{port}/api/v1/service/diabetes/score" in curl
        body = open("examples/models/diabetes/sample-request.json", "rb").read()
        answer = httpx.post(f"http://127.0.0.1:{port}/api/v1/service/diabetes/score", content=body,
                            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        assert answer.status_code == 200 and all(isinstance(x, float) for x in answer.json())
        replica_ports = [int(name.rsplit("-", 1)[1].split(".")[0]) for name in os.listdir(tmp_path / "run" / "logs")]
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(30)
    assert serve.returncode == 0, "".join(output) + serve.stdout.read()
    for busy in [port, *replica_ports]:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", busy)) != 0, f"port {busy} still served after exit"


def test_serve_reads_a_stacks_models():
    import argparse

    from aksinf.serve import _services

    services, purpose, jwt = _services(argparse.Namespace(stack="dev", purpose=None))
    assert [s.name for s in services] == ["diabetes"] and purpose == "DevTest" and jwt is None
    with pytest.raises(ValueError, match="no aks-inference:models"):
        _services(argparse.Namespace(stack="prod", purpose=None))


def test_serve_refuses_a_negative_scale_down_window(capsys):
    from aksinf.cli import main

    assert main(["serve", "--scale-down-window", "-1"]) == 2
    assert "--scale-down-window must be >= 0 seconds, got -1" in capsys.readouterr().err


def test_sigterm_during_start_up_leaves_nothing(tmp_path):
    serve = subprocess.Popen(
        [sys.executable, "-m", "aksinf", "serve", "--port", str(free_port()), "--run-dir", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        _wait(lambda: _model_servers_under(serve.pid), timeout=30)  # a replica is starting, not yet ready
        children = _model_servers_under(serve.pid)
    finally:
        serve.send_signal(signal.SIGTERM)
        output = serve.communicate(timeout=30)[0]
    assert serve.returncode == 0 and "stopping" in output, output
    _wait(lambda: not any(_alive(pid) for pid in children), timeout=5)


def _model_servers_under(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
                if ppid == parent and b"local.model_server" in cmdline.read():
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
