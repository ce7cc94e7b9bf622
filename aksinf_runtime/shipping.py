"""Durable, batched shipping of collected records: memory -> local spool -> blob storage.

`collect()` only appends to a list in memory (`Shipper.enqueue`). A spooler thread moves that list
to files on local disk every `flush_interval` seconds, one open segment per blob folder; a segment
is sealed after `batch_seconds` or `batch_bytes` and becomes one blob. An uploader thread sends
sealed segments oldest first and deletes each only after the upload succeeded; when the endpoint
fails it backs off (doubling up to `retry_max`) and keeps everything on disk meanwhile.

Nothing is lost when the endpoint is down: records wait on disk. A blob's name is fixed when its
segment is opened and uploads overwrite, so a retried upload never duplicates records. Each process
owns a spool folder locked with `flock`; a folder whose owner died (a killed worker, a restarted
container on the same emptyDir) is adopted and shipped by the next shipper that looks.

Bounded cost: memory holds at most `max_pending_records`, the spool at most `max_spool_bytes`;
beyond that, records are counted as dropped (and logged) rather than slowing `run()`.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import shutil
import socket
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from aksinf_runtime import environment
from aksinf_runtime.sinks import Sink, check_destination

log = logging.getLogger("aksinf_runtime.modeldata")

@dataclass(frozen=True)
class ShipperSettings:
    spool_root: Path
    destination: str | None  # file:///dir | https://<account>.blob.core.windows.net/<container> | emulator URL
    flush_interval: float = 0.2
    batch_seconds: float = 10.0
    batch_bytes: int = 4 * 1024 * 1024
    max_pending_records: int = 100_000
    max_spool_bytes: int = 1024 * 1024 * 1024
    retry_initial: float = 0.5
    retry_max: float = 30.0
    shutdown_seconds: float = 10.0
    adopt_every_seconds: float = 30.0

    ENVIRONMENT = {
        "destination": environment.MODELDATA_DESTINATION,
        "spool_root": environment.MODELDATA_SPOOL,
        "batch_seconds": environment.MODELDATA_BATCH_SECONDS,
        "batch_bytes": environment.MODELDATA_BATCH_BYTES,
        "max_spool_bytes": environment.MODELDATA_SPOOL_LIMIT_BYTES,
        "retry_max": environment.MODELDATA_RETRY_MAX_SECONDS,
        "shutdown_seconds": environment.MODELDATA_SHUTDOWN_SECONDS,
    }

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> ShipperSettings:
        """Settings from the variables the platform sets; every bad value is reported at once."""
        environ = os.environ if environ is None else environ
        values: dict = {}
        problems = []
        for name, variable in cls.ENVIRONMENT.items():
            raw = environ.get(variable)
            if raw is None or raw == "":
                continue
            if name == "destination":
                values[name] = raw
            elif name == "spool_root":
                values[name] = Path(raw)
            else:
                kind = int if name.endswith("bytes") else float
                try:
                    number = kind(raw)
                except ValueError:
                    number = None
                if number is None or number <= 0:
                    problems.append(f"{variable}={raw!r}: must be a positive {'integer' if kind is int else 'number'}")
                    continue
                values[name] = number
        if values.get("destination"):
            try:
                check_destination(values["destination"])
            except ValueError as error:
                problems.append(f"{cls.ENVIRONMENT['destination']}={values['destination']!r}: {error}")
        if problems:
            raise ValueError("model data collection is misconfigured:\n  - " + "\n  - ".join(problems))
        values.setdefault("spool_root", Path(os.environ.get("TMPDIR", "/tmp")) / "aksinf-modeldata")
        values.setdefault("destination", None)
        return cls(**values)


@dataclass
class _Segment:
    relative: str  # blob name, also the path under open/ and sealed/
    opened: float
    size: int = 0


@dataclass
class ShipperStats:
    pending_records: int = 0
    spooled_bytes: int = 0
    uploaded_records: int = 0
    uploaded_batches: int = 0
    failed_uploads: int = 0
    dropped_records: int = 0
    adopted_segments: int = 0


class Shipper:
    """One per process: every collector of the process shares its spool and uploader."""

    def __init__(self, settings: ShipperSettings, sink: Sink | None, clock=time.time):
        self.settings = settings
        self.sink = sink
        self.clock = clock
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dir = self._claim_folder()
        self._pending: list[tuple[str, str, int]] = []  # (blob folder and stem, lines, record count)
        self._pending_records = 0
        self._pending_lock = threading.Lock()
        self._open: dict[str, _Segment] = {}
        self._sequence = itertools.count()
        self.stats = ShipperStats()
        self._stats_lock = threading.Lock()
        self._stopping = threading.Event()
        self._upload_deadline: float | None = None
        self._wake_uploader = threading.Event()
        self._failing_since: float | None = None
        self._last_drop_log = 0.0
        self.stats.spooled_bytes = self._adopt_orphans()  # our folder is new: what it holds was adopted
        self._spooler = threading.Thread(target=self._spool_loop, name="modeldata-spooler", daemon=True)
        self._uploader = threading.Thread(target=self._upload_loop, name="modeldata-uploader", daemon=True)
        self._spooler.start()
        self._uploader.start()

    # ------------------------------------------------------------------ scoring path

    def enqueue(self, folder_and_stem: str, lines: str, records: int) -> bool:
        """O(1) under a lock: no I/O on the scoring path. False when the bounds are reached."""
        with self._pending_lock:
            if self._stopping.is_set() or self._pending_records + records > self.settings.max_pending_records:
                self.stats.dropped_records += records
                dropped = True
            else:
                self._pending.append((folder_and_stem, lines, records))
                self._pending_records += records
                dropped = False
        if dropped:
            self._log_drop()
        return not dropped

    # ------------------------------------------------------------------ spool

    def _claim_folder(self) -> Path:
        """Create and lock our folder under a hidden name first, so no one adopts it half-made."""
        self.settings.spool_root.mkdir(parents=True, exist_ok=True)
        making = self.settings.spool_root / f".{self.owner}"
        (making / "open").mkdir(parents=True)
        (making / "sealed").mkdir()
        self._lock_fd = os.open(making / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        final = self.settings.spool_root / self.owner
        os.rename(making, final)
        return final

    def _spool_loop(self) -> None:
        while not self._stopping.wait(self.settings.flush_interval):
            self._spool_once()
        self._spool_once(seal_all=True)

    def _spool_once(self, seal_all: bool = False) -> None:
        now = self.clock()
        batch = []
        # Past the disk budget, records wait in memory (and drop past its bound) until uploads free space.
        if self.stats.spooled_bytes < self.settings.max_spool_bytes or seal_all:
            with self._pending_lock:
                batch, self._pending, self._pending_records = self._pending, [], 0
        buffers: dict[str, list[str]] = defaultdict(list)
        buffered: dict[str, int] = defaultdict(int)
        for folder_and_stem, lines, _ in batch:
            buffers[folder_and_stem].append(lines)
            buffered[folder_and_stem] += len(lines)
            segment = self._open.get(folder_and_stem) or self._new_segment(folder_and_stem, now)
            if segment.size + buffered[folder_and_stem] >= self.settings.batch_bytes:  # a full batch: one blob
                self._write(segment, buffers.pop(folder_and_stem))
                buffered.pop(folder_and_stem)
                self._seal(folder_and_stem)
        for folder_and_stem, chunks in buffers.items():
            self._write(self._open.get(folder_and_stem) or self._new_segment(folder_and_stem, now), chunks)
        for folder_and_stem, segment in list(self._open.items()):
            if seal_all or now - segment.opened >= self.settings.batch_seconds or segment.size >= self.settings.batch_bytes:
                self._seal(folder_and_stem)

    def _write(self, segment: _Segment, chunks: list[str]) -> None:
        data = "".join(chunks).encode()
        with open(self.dir / "open" / segment.relative, "ab") as handle:  # one write per flush: a crash tears only the tail
            handle.write(data)
        segment.size += len(data)
        with self._stats_lock:
            self.stats.spooled_bytes += len(data)

    def _new_segment(self, folder_and_stem: str, now: float) -> _Segment:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        relative = f"{folder_and_stem}-{stamp}-{self.owner}-{next(self._sequence):06d}.jsonl"
        (self.dir / "open" / relative).parent.mkdir(parents=True, exist_ok=True)
        segment = self._open[folder_and_stem] = _Segment(relative, now)
        return segment

    def _seal(self, folder_and_stem: str) -> None:
        segment = self._open.pop(folder_and_stem)
        target = self.dir / "sealed" / segment.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.dir / "open" / segment.relative, target)
        self._wake_uploader.set()

    def _adopt_orphans(self) -> int:
        """Take over the spool of shippers that died (their lock is free); returns the bytes taken."""
        adopted_bytes = 0
        for other in sorted(self.settings.spool_root.iterdir()):
            if other == self.dir or other.name.startswith(".") or not other.is_dir():
                continue
            try:
                fd = os.open(other / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # its owner is alive
            try:
                for state in ("open", "sealed"):
                    for path in sorted((other / state).rglob("*.jsonl")):
                        if state == "open":
                            _cut_torn_tail(path)
                        relative = path.relative_to(other / state)
                        target = self.dir / "sealed" / relative
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.rename(path, target)
                        adopted_bytes += target.stat().st_size
                        self.stats.adopted_segments += 1
                shutil.rmtree(other, ignore_errors=True)
            finally:
                os.close(fd)
        if adopted_bytes:
            log.info("adopted %d bytes of model data left by a stopped process", adopted_bytes)
            self._wake_uploader.set()
        return adopted_bytes

    # ------------------------------------------------------------------ upload

    def _sealed(self) -> list[Path]:
        paths = list((self.dir / "sealed").rglob("*.jsonl"))
        return sorted(paths, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def _upload_loop(self) -> None:
        delay = 0.0
        next_adoption = self.clock() + self.settings.adopt_every_seconds
        while True:
            if self._stopping.is_set():
                self._spooler.join()
                if not self._sealed() or self.clock() >= (self._upload_deadline or 0):
                    return
            elif self.clock() >= next_adoption:
                with self._stats_lock:
                    self.stats.spooled_bytes += self._adopt_orphans()
                next_adoption = self.clock() + self.settings.adopt_every_seconds
            failed = False
            for path in self._sealed():
                if not self._upload(path):
                    failed = True
                    break
            if failed:
                delay = min(self.settings.retry_max, max(self.settings.retry_initial, delay * 2))
                self._sleep(delay)
            else:
                delay = 0.0
                if not self._stopping.is_set():
                    self._wake_uploader.wait(1.0)
                    self._wake_uploader.clear()

    def _sleep(self, seconds: float) -> None:
        """Back-off that a shutdown cuts short at its deadline."""
        if self._upload_deadline is not None:
            seconds = max(0.0, min(seconds, self._upload_deadline - self.clock()))
        self._wake_uploader.wait(seconds)
        self._wake_uploader.clear()

    def _upload(self, path: Path) -> bool:
        if self.sink is None:
            return False  # no destination configured: keep everything on disk
        name = path.relative_to(self.dir / "sealed").as_posix()
        data = path.read_bytes()
        try:
            self.sink.put(name, data)
        except Exception as error:  # noqa: BLE001 - any failure means: keep the file, retry later
            with self._stats_lock:
                self.stats.failed_uploads += 1
            if self._failing_since is None:
                self._failing_since = self.clock()
                log.warning("model data upload to %s failed (%s); keeping batches on disk and retrying", self.sink, error)
            return False
        path.unlink()
        with self._stats_lock:
            self.stats.uploaded_batches += 1
            self.stats.uploaded_records += data.count(b"\n")
            self.stats.spooled_bytes -= len(data)
        if self._failing_since is not None:
            log.warning("model data uploads to %s work again after %.1f s", self.sink, self.clock() - self._failing_since)
            self._failing_since = None
        return True

    # ------------------------------------------------------------------ shutdown

    def close(self, timeout: float | None = None) -> bool:
        """Spool and seal everything, then upload for up to `timeout` seconds. True if nothing is left.

        What cannot be uploaded in time stays in the spool folder, for the next shipper to adopt.
        """
        if self._lock_fd is None:  # closed already (explicitly, then again at exit)
            return not self._sealed()
        timeout = self.settings.shutdown_seconds if timeout is None else timeout
        if not self._stopping.is_set():
            self._upload_deadline = self.clock() + timeout
            self._stopping.set()
            self._wake_uploader.set()
        self._spooler.join()
        self._uploader.join(max(0.0, (self._upload_deadline or 0) - self.clock()) + 1.0)
        left = self._sealed()
        if left:
            log.warning("model data: %d batch(es) not uploaded at shutdown; kept in %s", len(left), self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        os.close(self._lock_fd)  # releasing the lock lets the next shipper adopt what is left
        self._lock_fd = None
        return not left

    def _log_drop(self) -> None:
        now = self.clock()
        if now - self._last_drop_log >= 60:
            self._last_drop_log = now
            log.error(
                "model data: dropped records (%d so far): the in-memory bound (%d records) or the spool bound (%d bytes) is reached",
                self.stats.dropped_records, self.settings.max_pending_records, self.settings.max_spool_bytes,
            )


def _cut_torn_tail(path: Path) -> None:
    """A process killed mid-write can leave half a line: keep whole lines only."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as handle:
            handle.truncate(data.rfind(b"\n") + 1)
