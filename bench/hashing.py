"""Hashing throughput: cold streamed sha256 vs `hashlib.file_digest` (same run), and the warm stat cache per service.

A real (non-sparse) file is written to a temp dir so the cold numbers read actual bytes;
it is deleted afterwards. The warm case re-computes the sample service's tag from a filled cache.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from bench.common import print_table, write_results
from contract.service import load_service
from serving.hashing import StatCache, file_digest
from serving.images import service_image

FILE_MB = 256
SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "models" / "diabetes"
WARM_ROUNDS = 50


def _timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def _baseline(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-hashing-") as tmp:
        big = Path(tmp) / "model.bin"
        block = os.urandom(1024 * 1024)
        with open(big, "wb") as handle:
            for _ in range(FILE_MB):
                handle.write(block)
        ours_s, ours = _timed(lambda: file_digest(big))
        base_s, base = _timed(lambda: _baseline(big))
        assert ours == base, "streamed digest differs from hashlib.file_digest"

        service = load_service(SAMPLE, "diabetes")
        cache = StatCache(Path(tmp) / "hashes.json")
        cold_service_s, image = _timed(lambda: service_image(service, cache))
        cold_reads = cache.reads
        cache.reads = 0
        warm_total_s, _ = _timed(lambda: [service_image(service, cache) for _ in range(WARM_ROUNDS)])
        warm_reads = cache.reads
    results = {
        "file_mb": FILE_MB,
        "cold_mb_per_s": round(FILE_MB / ours_s, 1),
        "baseline_file_digest_mb_per_s": round(FILE_MB / base_s, 1),
        "service": {
            "files": len(image.digests),
            "cold_ms": round(cold_service_s * 1000, 3),
            "cold_reads": cold_reads,
            "warm_ms": round(warm_total_s / WARM_ROUNDS * 1000, 3),
            "warm_reads": warm_reads,
            "note": "warm reads may be >0 for files modified within the racy window (never cached)",
        },
    }
    path = write_results("hashing", results)
    print_table(
        ["case", "value"],
        [
            [f"cold streamed sha256 ({FILE_MB} MB)", f"{results['cold_mb_per_s']} MB/s"],
            ["baseline hashlib.file_digest", f"{results['baseline_file_digest_mb_per_s']} MB/s"],
            ["sample service, cold", f"{results['service']['cold_ms']} ms ({cold_reads} reads)"],
            ["sample service, warm cache", f"{results['service']['warm_ms']} ms ({warm_reads} reads)"],
        ],
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
