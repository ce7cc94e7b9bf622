"""One local platform (`aksinf serve`) per run dir, and nothing a killed one started left running.

- `RunLock`: an exclusive `flock` on `<run dir>/serve.lock`, holding the owner's PID. The kernel drops it
  when the owner dies, SIGKILL included; while the owner lives, a second one gets `RunDirBusy` naming
  that PID before it has changed anything in the run dir.
- `RunState`: `<run dir>/serve-state.json`, rewritten (temp file + rename) each time a child process starts:
  Envoy's and every replica's PID with its start time, port and service, and the status-server port.
  Removed on a clean stop, so a state file found under a free lock was left by a killed predecessor.
- `verdict` / `leftovers` (pure): which recorded processes are still the very processes recorded, given
  what /proc says now. A PID is the same process only if it runs in the same boot with the same start
  time (`/proc/<pid>/stat` field 22, unchanged by `exec`); a PID taken by another process is never signalled.
- `stop_leftovers`: SIGTERM to each leftover's process group (every child runs in its own session), then
  SIGKILL to what is left after a bounded wait, re-checking each one's identity right before each signal.
- `check_port_free`: refuse a router port some other process listens on, naming the port and, when
  /proc shows it, the process. Envoy listens with SO_REUSEPORT by default on Linux (`enable_reuse_port`,
  https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/listener/v3/listener.proto), so a second Envoy
  would bind the same port without complaint and share its connections with the first.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

LOCK_FILE = "serve.lock"
STATE_FILE = "serve-state.json"

Verdict = Literal["stop", "gone", "reused"]


class RunDirBusy(RuntimeError):
    """Another live platform holds the run dir."""


class PortBusy(RuntimeError):
    """Something that is not ours listens on the router port."""


@dataclass(frozen=True)
class Recorded:
    """A child process as recorded when it started."""

    role: str  # "envoy" | "replica"
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: clock ticks after boot
    port: int | None = None
    service: str | None = None

    def describe(self) -> str:
        what = f"replica of {self.service}" if self.role == "replica" else self.role
        return f"{what} (PID {self.pid}" + (f", port {self.port})" if self.port else ")")


@dataclass(frozen=True)
class Seen:
    """What /proc says about a PID now."""

    start_ticks: int
    zombie: bool = False


def verdict(record: Recorded, seen: Seen | None, same_boot: bool) -> Verdict:
    """"stop": `record`'s process still runs; "gone": it exited (a zombie has: it holds no port and runs no
    code); "reused": its PID now belongs to another process (another boot, or another start time)."""
    if seen is None:
        return "gone"
    if not same_boot or seen.start_ticks != record.start_ticks:
        return "reused"
    return "gone" if seen.zombie else "stop"


def leftovers(records: Sequence[Recorded], seen: Mapping[int, Seen], same_boot: bool) -> list[Recorded]:
    """The recorded processes still running as recorded (`seen`: /proc's view of their PIDs)."""
    return [r for r in records if verdict(r, seen.get(r.pid), same_boot) == "stop"]


# ----------------------------------------------------------------------------- /proc


def observe(pid: int) -> Seen | None:
    """/proc's view of `pid`, None if no such process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 onwards
    except (OSError, IndexError):
        return None
    return Seen(int(fields[19]), fields[0] in ("Z", "X"))


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _observe_all(records: Sequence[Recorded]) -> dict[int, Seen]:
    return {r.pid: seen for r in records if (seen := observe(r.pid)) is not None}


def port_holders(port: int) -> list[int]:
    """PIDs of the processes holding a TCP socket that listens on `port` (IPv4 or IPv6), as far as /proc shows
    (another user's processes are not visible)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # 0A: TCP_LISTEN
                inodes.add(fields[9])
    holders = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    holders.add(int(entry))
                    break
        except OSError:
            continue
    return sorted(holders)


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def check_port_free(host: str, port: int) -> None:
    """PortBusy naming `port` (and who listens on it) if a socket listens there; TIME_WAIT leftovers do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT: any listener conflicts
        try:
            probe.bind((host, port))
            return
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
    holders = port_holders(port)
    who = ", ".join(f"PID {pid} ({_command_line(pid)[:120]})" for pid in holders) or "a process this user cannot see"
    raise PortBusy(f"port {port} on {host} is already in use by {who}; stop it or choose another --port")


# ----------------------------------------------------------------------------- the lock


class RunLock:
    """An exclusive lock on `run_dir`, held until `release()` or the holder's death."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK_FILE
        self.file = open(self.path, "a+")  # noqa: SIM115 - held for the platform's lifetime
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip()
            self.file.close()
            owner = f"PID {holder}" if holder.isdigit() else "a process that is starting"
            raise RunDirBusy(
                f"run dir {run_dir} is in use by another aksinf serve ({owner}); stop it"
                + (f" (kill {holder})" if holder.isdigit() else "") + " or use another --run-dir"
            ) from None
        self.file.truncate(0)
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            self.file.close()  # closing drops the flock; the file stays (unlinking a lock file races)


# ----------------------------------------------------------------------------- the state file


def load_state(path: Path) -> tuple[str | None, list[Recorded]]:
    """(boot id, recorded processes) of a state file; (None, []) if there is none or it is unreadable
    (a predecessor killed before its first write; nothing it started can be known)."""
    try:
        document = json.loads(path.read_text())
        return document["boot_id"], [Recorded(**p) for p in document["processes"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None, []


class RunState:
    """What this platform started, kept on disk for a successor in case this one is killed."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / STATE_FILE
        self.boot = boot_id()
        self.records: list[Recorded] = []
        self.ports: dict[str, int] = {}
        self.lock = threading.Lock()

    def started(self, role: str, pid: int, port: int | None = None, service: str | None = None) -> None:
        """Record a child that has just started (and forget the recorded ones that have exited)."""
        seen = observe(pid)
        with self.lock:
            running = _observe_all(self.records)
            self.records = leftovers(self.records, running, same_boot=True)
            if seen is not None:
                self.records.append(Recorded(role, pid, seen.start_ticks, port, service))
            self._write()

    def note_port(self, name: str, port: int) -> None:
        """Record a port this process itself serves (router, admin, status), for whoever reads the file."""
        with self.lock:
            self.ports[name] = port
            self._write()

    def clear(self) -> None:
        with self.lock:
            self.records = []
            self.path.unlink(missing_ok=True)

    def _write(self) -> None:
        document = {
            "owner": os.getpid(), "boot_id": self.boot, "ports": self.ports, "processes": [asdict(r) for r in self.records],
        }
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2))
        temporary.replace(self.path)


def stop_leftovers(run_dir: Path, timeout: float = 10.0, report: Callable[[str], None] = lambda _: None) -> list[Recorded]:
    """Stop what a killed predecessor recorded in `run_dir` and is still running as recorded; the ones
    stopped. Each process group gets SIGTERM, then SIGKILL after `timeout`; the state file is removed."""
    path = run_dir / STATE_FILE
    recorded_boot, records = load_state(path)
    if not records:
        path.unlink(missing_ok=True)
        return []
    same_boot = recorded_boot == boot_id()
    stopped = leftovers(records, _observe_all(records), same_boot)
    for record in records:
        if record not in stopped and verdict(record, observe(record.pid), same_boot) == "reused":
            report(f"left alone PID {record.pid}: it is no longer the {record.describe()} a previous aksinf serve started")
    remaining = stopped
    for sig in (signal.SIGTERM, signal.SIGKILL):
        remaining = leftovers(remaining, _observe_all(remaining), same_boot)  # identity re-checked right before each signal
        for record in remaining:
            report(f"stopping {record.describe()}, left running by a previous aksinf serve that was killed"
                   if sig == signal.SIGTERM else f"killing {record.describe()}: still running after {timeout:g} s")
            _signal_group(record.pid, sig)
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline and leftovers(remaining, _observe_all(remaining), same_boot):
            time.sleep(0.05)
    path.unlink(missing_ok=True)
    return stopped


def _signal_group(pid: int, sig: int) -> None:
    """Signal `pid`'s process group if it leads one (our children do: own session), else `pid` alone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
