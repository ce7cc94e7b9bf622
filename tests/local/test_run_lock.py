"""One platform per run dir; a killed one's processes stopped by its successor, and never a process that reused a PID."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.run_lock import (
    STATE_FILE,
    PortBusy,
    Recorded,
    RunDirBusy,
    RunLock,
    RunState,
    Seen,
    check_port_free,
    leftovers,
    observe,
    port_holders,
    stop_leftovers,
    verdict,
)

ENVOY = Recorded("envoy", 100, start_ticks=5000, port=8800)


@pytest.mark.parametrize(
    ("seen", "same_boot", "expected"),
    [
        (Seen(5000), True, "stop"),  # still the process recorded
        (None, True, "gone"),  # exited and reaped
        (Seen(5000, zombie=True), True, "gone"),  # exited, not yet reaped: holds no port, runs nothing
        (Seen(7000), True, "reused"),  # the PID now belongs to a process started later
        (Seen(7000, zombie=True), True, "reused"),
        (Seen(5000), False, "reused"),  # another boot: the same start time means nothing
        (None, False, "gone"),
    ],
)
def test_verdict(seen, same_boot, expected):
    assert verdict(ENVOY, seen, same_boot) == expected


def test_leftovers_are_the_recorded_processes_still_running_as_recorded():
    replica = Recorded("replica", 101, 5100, port=40001, service="alpha")
    reused = Recorded("replica", 102, 5200, port=40002, service="alpha")
    gone = Recorded("replica", 103, 5300, port=40003, service="beta")
    seen = {100: Seen(5000), 101: Seen(5100), 102: Seen(9999)}
    assert leftovers([ENVOY, replica, reused, gone], seen, same_boot=True) == [ENVOY, replica]
    assert leftovers([ENVOY, replica], seen, same_boot=False) == []


def test_a_second_lock_on_a_run_dir_names_the_holder_and_changes_nothing(tmp_path):
    first = RunLock(tmp_path)
    before = (tmp_path / "serve.lock").read_text()
    with pytest.raises(RunDirBusy, match=rf"run dir {tmp_path} is in use by another aksinf serve \(PID {os.getpid()}\).*kill {os.getpid()}"):
        RunLock(tmp_path)
    assert (tmp_path / "serve.lock").read_text() == before == f"{os.getpid()}\n"
    first.release()
    RunLock(tmp_path).release()  # free again


def test_the_lock_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, pathlib; from local.run_lock import RunLock; lock = RunLock(pathlib.Path(sys.argv[1])); print('held', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RunDirBusy, match=f"PID {holder.pid}"):
            RunLock(tmp_path)
    finally:
        holder.kill()
        holder.wait(10)
    RunLock(tmp_path).release()  # SIGKILL released it


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


def _gone(process: subprocess.Popen, seconds: float = 10.0) -> bool:
    try:
        process.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        return False


def test_a_killed_predecessors_processes_are_stopped_and_a_reused_pid_is_left_alone(tmp_path):
    ours, unrelated, exited = _sleeper(), _sleeper(), _sleeper()
    try:
        state = RunState(tmp_path)
        state.started("envoy", ours.pid, 8800)
        state.started("replica", exited.pid, 40001, "alpha")
        exited.kill()
        exited.wait(10)
        state.started("replica", unrelated.pid, 40002, "alpha")  # the exited one is forgotten here
        recorded = json.loads((tmp_path / STATE_FILE).read_text())["processes"]
        assert [(p["role"], p["pid"]) for p in recorded] == [("envoy", ours.pid), ("replica", unrelated.pid)]
        # `unrelated` stands for a process that took a recorded PID later: another start time.
        recorded[1]["start_ticks"] -= 1
        (tmp_path / STATE_FILE).write_text(json.dumps({**json.loads((tmp_path / STATE_FILE).read_text()), "processes": recorded}))
        reports: list[str] = []
        stopped = stop_leftovers(tmp_path, timeout=5, report=reports.append)  # the predecessor was killed: no clear()
        assert [r.pid for r in stopped] == [ours.pid]
        assert _gone(ours) and ours.returncode == -signal.SIGTERM
        assert unrelated.poll() is None
        assert reports == [
            f"left alone PID {unrelated.pid}: it is no longer the replica of alpha (PID {unrelated.pid}, port 40002) a previous aksinf serve started",
            f"stopping envoy (PID {ours.pid}, port 8800), left running by a previous aksinf serve that was killed",
        ]
        assert not (tmp_path / STATE_FILE).exists()
        assert stop_leftovers(tmp_path) == []
    finally:
        for process in (ours, unrelated, exited):
            process.kill()
            process.wait(10)


def test_one_that_ignores_sigterm_is_killed(tmp_path):
    stubborn = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        assert stubborn.stdout.readline() == "ready\n"
        RunState(tmp_path).started("replica", stubborn.pid, 40001, "alpha")
        reports: list[str] = []
        stop_leftovers(tmp_path, timeout=0.5, report=reports.append)
        assert _gone(stubborn) and stubborn.returncode == -signal.SIGKILL
        assert reports[-1] == f"killing replica of alpha (PID {stubborn.pid}, port 40001): still running after 0.5 s"
    finally:
        stubborn.kill()
        stubborn.wait(10)


def test_a_clean_stop_leaves_no_state_and_an_unreadable_state_stops_nothing(tmp_path):
    state = RunState(tmp_path)
    state.note_port("status", 9090)
    assert json.loads((tmp_path / STATE_FILE).read_text())["ports"] == {"status": 9090}
    state.clear()
    assert not (tmp_path / STATE_FILE).exists()
    (tmp_path / STATE_FILE).write_text("{not json")
    assert stop_leftovers(tmp_path) == [] and not (tmp_path / STATE_FILE).exists()


def test_a_port_someone_else_listens_on_is_refused_naming_it():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_holders(port) == [os.getpid()]
        with pytest.raises(PortBusy, match=rf"port {port} on 127.0.0.1 is already in use by PID {os.getpid()} \(.*python.*\); stop it or choose another --port"):
            check_port_free("127.0.0.1", port)
    assert port_holders(port) == []
    check_port_free("127.0.0.1", port)  # closed: free again


def test_observe_reads_a_start_time_that_survives_exec():
    process = subprocess.Popen([sys.executable, "-c", "import os, sys; os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)'])"])
    try:
        first = observe(process.pid)
        deadline = time.monotonic() + 10
        while b"sleep" not in Path(f"/proc/{process.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert observe(process.pid) == first and first is not None and not first.zombie
    finally:
        process.kill()
        process.wait(10)
    assert observe(process.pid) is None
