"""A small keep-alive HTTP/1.1 load generator (asyncio, raw sockets), bounded in requests and time.

The same client drives the direct baseline and the through-the-router case, so its own
overhead cancels out of the comparison. Loopback targets only.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def summary(self) -> dict:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.percentile(50), 3),
            "p99_ms": round(self.percentile(99), 3),
            "mean_ms": round(statistics.fmean(self.latencies_ms), 3) if self.latencies_ms else 0.0,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
        }


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def _run(host: str, port: int, path: str, body: bytes, headers: dict, connections: int, max_requests: int, seconds: float) -> LoadResult:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\nContent-Type: application/json\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    request = head.encode() + body
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal errors, sent
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while sent < max_requests and time.perf_counter() < deadline:
                sent += 1
                started = time.perf_counter()
                writer.write(request)
                await writer.drain()
                try:
                    status = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return LoadResult(len(latencies), errors, time.perf_counter() - started, latencies, statuses)


def run_load(port: int, path: str, *, body: bytes = b"{}", headers: dict | None = None, connections: int = 1,
             max_requests: int = 20000, seconds: float = 3.0, host: str = "127.0.0.1") -> LoadResult:
    assert host.startswith("127."), "loopback targets only"
    return asyncio.run(_run(host, port, path, body, headers or {}, connections, max_requests, seconds))
