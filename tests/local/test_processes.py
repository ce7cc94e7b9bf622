"""The local-process actuator: observed service time re-publishes Envoy's config only when a queue size changes."""

from router.envoy_files import read_dynamic_file
from router.spec import ServiceRoute


def test_observed_latency_resizes_the_queue_only_when_it_changes(tmp_path):
    from local.processes import LocalProcesses, LocalService
    from router.envoy_files import ConfigWriter
    from router.spec import RouterSettings

    settings = RouterSettings(config_dir=tmp_path, listen_port=1, admin_port=2)
    route = ServiceRoute("alpha", auth="none", max_queue_wait_ms=500)
    actuator = LocalProcesses([LocalService(route, lambda port: [])], ConfigWriter(tmp_path), settings, tmp_path / "logs")
    actuator.publish()
    assert route.queue_capacity() == 500  # unknown service time: a fast service is assumed (1 ms per request)
    assert actuator.observe_latency({"alpha": 10.0}) is True  # 10 ms per request: 50 may wait 500 ms
    assert actuator.routes()[0].queue_capacity() == 50
    assert actuator.observe_latency({"alpha": 9.9}) is False  # same queue size (50): nothing rewritten


# ----------------------------------------------------------------------------- replicas that exit on their own


def test_replacement_is_immediate_then_backs_off_then_stops_within_the_window():
    from local.processes import MAX_RESTARTS, RESTART_WINDOW_SECONDS, replacement_due

    assert replacement_due([100.0], now=100.0) == 100.0  # first exit: at once
    assert replacement_due([100.0, 101.0], now=101.0) == 102.0  # then 1 s after the latest exit
    assert replacement_due([100.0, 101.0, 102.0], now=102.0) == 104.0  # 2 s
    assert replacement_due([float(t) for t in range(MAX_RESTARTS)], now=MAX_RESTARTS - 1.0) == 4.0 + 2.0 ** (MAX_RESTARTS - 2)
    crash_loop = [float(t) for t in range(MAX_RESTARTS + 1)]
    assert replacement_due(crash_loop, now=MAX_RESTARTS + 1.0) is None  # bounded: no replacement...
    oldest_gone = crash_loop[0] + RESTART_WINDOW_SECONDS  # ...until exits age out of the window
    assert replacement_due(crash_loop, now=oldest_gone) == crash_loop[-1] + 2.0 ** (MAX_RESTARTS - 2)
    assert replacement_due(crash_loop, now=crash_loop[-1] + RESTART_WINDOW_SECONDS) == crash_loop[-1] + RESTART_WINDOW_SECONDS


def _endpoints(config_dir) -> list[int]:
    cluster = read_dynamic_file(config_dir / "cds.pb")["resources"][0]
    localities = cluster["load_assignment"].get("endpoints", [])  # empty lists are absent in proto
    return [e["endpoint"]["address"]["socket_address"]["port_value"] for locality in localities for e in locality.get("lb_endpoints", [])]


def _actuator(tmp_path, command):
    from local.processes import LocalProcesses, LocalService
    from router.envoy_files import ConfigWriter
    from router.spec import RouterSettings

    settings = RouterSettings(config_dir=tmp_path / "envoy", listen_port=1, admin_port=2)
    actuator = LocalProcesses([LocalService(ServiceRoute("alpha", auth="none"), command)], ConfigWriter(settings.config_dir), settings, tmp_path / "logs")
    return actuator, settings.config_dir


def _until(predicate, seconds: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_a_killed_replica_leaves_the_routes_and_a_replacement_takes_its_place(tmp_path, caplog):
    """Real processes (Python's http.server answers 200 on /, as a model server's liveness path does)."""
    import signal
    import sys

    (tmp_path / "site").mkdir()
    actuator, config_dir = _actuator(tmp_path, lambda port: [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path / "site")])
    try:
        actuator.scale("alpha", 1)
        actuator.wait_ready(20)
        old = actuator.services["alpha"].replicas[0]
        assert _endpoints(config_dir) == [old.port]
        old.process.send_signal(signal.SIGKILL)
        old.process.wait(10)
        assert actuator.reconcile() is True  # Envoy's config changed: the dead replica is out...
        assert _endpoints(config_dir) == []
        [new] = actuator.services["alpha"].replicas  # ...and its replacement is starting
        assert new.port != old.port and new.process.poll() is None
        assert f"service alpha: replica on port {old.port} exited with code -9 (log: {old.log_path}); replacing it in 0 s" in caplog.text
        assert f"service alpha: started a replacement replica on port {new.port} (log: {new.log_path})" in caplog.text
        _until(lambda: actuator.reconcile() or actuator.ready_replicas("alpha") == 1)
        assert _endpoints(config_dir) == [new.port]
    finally:
        actuator.stop_all()
    assert actuator.reconcile() is False and actuator.services["alpha"].replicas == []  # stopped: nothing restarts


def test_a_crash_loop_is_replaced_with_backoff_and_then_left_down(tmp_path, caplog):
    import sys

    from local.processes import MAX_RESTARTS

    actuator, _ = _actuator(tmp_path, lambda port: [sys.executable, "-c", "raise SystemExit(3)"])
    state = actuator.services["alpha"]
    try:
        actuator.scale("alpha", 1)
        now, started = 1000.0, 1
        for exits in range(1, MAX_RESTARTS + 2):
            state.replicas[0].process.wait(10)
            actuator.reconcile(now)  # the exit is noticed here
            if exits == 1:
                assert len(state.replicas) == 1  # the first one is replaced at once
            else:
                assert state.replicas == []  # the next ones wait
                actuator.reconcile(now + 2.0 ** (exits - 2) - 0.01)
                if exits == MAX_RESTARTS + 1:
                    break
                assert state.replicas == []
                now += 2.0 ** (exits - 2)
                actuator.reconcile(now)
                assert len(state.replicas) == 1
            started += 1
        assert state.replicas == [] and started == MAX_RESTARTS + 1  # the first start and MAX_RESTARTS replacements
        assert f"not replacing it: {MAX_RESTARTS + 1} exits within 300 s" in caplog.text
        assert caplog.text.count("exited with code 3") == MAX_RESTARTS + 1
        actuator.reconcile(now + 300)  # the window has passed: it is tried again
        assert len(state.replicas) == 1
    finally:
        actuator.stop_all()


def test_killing_the_only_replica_of_a_devtest_service_brings_a_new_one_behind_envoy(tmp_path, caplog):
    """The whole local path (real Envoy, real azureml-inference-server-http, the control loop): the replica's
    process group is SIGKILLed, as an OOM kill does to a container; the service answers again, from a new process."""
    import json
    import os
    import signal

    import httpx

    from contract.service import load_service
    from local.net import free_port
    from local.platform import LocalPlatform

    folder = tmp_path / "svc"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "weights.bin").write_bytes(b"\0")
    (folder / "score.py").write_text("import os\ndef init():\n    pass\ndef run(raw):\n    return {'pid': os.getpid()}\n")
    (folder / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    (folder / "deploymentconfig.json").write_text(json.dumps({"computeType": "AKS", "numReplicas": 1, "authEnabled": False}))
    with LocalPlatform([load_service(folder, "solo")], tmp_path / "run", purpose="DevTest", listen_port=free_port()) as platform:
        url = f"{platform.url}/api/v1/service/solo/score"
        first = httpx.post(url, content=b"{}", timeout=10).json()["pid"]
        [replica] = platform.actuator.services["solo"].replicas
        os.killpg(replica.process.pid, signal.SIGKILL)
        answers: list[int] = []

        def served_by_another() -> bool:
            answer = httpx.post(url, content=b"{}", timeout=10)
            answers.append(answer.status_code)
            return answer.status_code == 200 and answer.json()["pid"] != first

        _until(served_by_another, seconds=60)
        # Until the new one is ready: 503 (no ready replica, or connection refused), 502 at most for a request
        # that met the dying process; never an error of another kind.
        assert set(answers) <= {200, 502, 503}
        assert platform.actuator.ready_replicas("solo") == 1 and replica not in platform.actuator.services["solo"].replicas
        assert f"service solo: replica on port {replica.port} exited with code -9 (log: {replica.log_path})" in caplog.text
