"""Per-service environment set-up for the sample (`local.environments`): cold and warm.

- cold, uv cache empty: a fresh environment from the sample's conda.yml with an empty uv cache
  (`UV_CACHE_DIR` in a temp dir): every wheel downloaded from PyPI, so this depends on the network;
- cold, uv cache warm: a fresh environment folder again, wheels from uv's cache (a new conda file or
  runtime change on a machine that built environments before);
- warm: `aksinf serve` started again, the environment found by its tag (what every restart costs).

Each case runs in its own temp folders, removed afterwards; the platform's `.venv` is not touched.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import print_table, write_results
from contract.service import load_service
from local.environments import prepare

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "models" / "diabetes"
WARM_ROUNDS = 20


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    service = load_service(SAMPLE, "diabetes")
    previous_cache = os.environ.get("UV_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="bench-envs-") as tmp:
        root = Path(tmp)
        try:
            os.environ["UV_CACHE_DIR"] = str(root / "uv-cache")
            cold_empty = _timed(lambda: prepare(service, root / "empty-cache"))
        finally:
            if previous_cache is None:
                os.environ.pop("UV_CACHE_DIR", None)
            else:
                os.environ["UV_CACHE_DIR"] = previous_cache
        prepare(service, root / "fill-user-cache")  # the user's uv cache holds the wheels from here on
        cold_cached = _timed(lambda: prepare(service, root / "cached"))
        warm = [_timed(lambda: prepare(service, root / "cached")) for _ in range(WARM_ROUNDS)]
        size_mb = sum(f.stat().st_size for f in (root / "cached").rglob("*") if f.is_file() and not f.is_symlink()) / 2**20
        shutil.rmtree(root / "uv-cache", ignore_errors=True)
    results = {
        "service": "diabetes (examples/models/diabetes/conda.yml)",
        "cold_empty_uv_cache_s": round(cold_empty, 2),
        "cold_warm_uv_cache_s": round(cold_cached, 2),
        "warm_ms_median": round(statistics.median(warm) * 1000, 2),
        "warm_rounds": WARM_ROUNDS,
        "environment_mb": round(size_mb, 1),
        "note": "cold with an empty uv cache downloads every wheel from PyPI: network-bound",
    }
    path = write_results("envs", results)
    print_table(
        ["case", "value"],
        [
            ["cold, empty uv cache (downloads)", f"{results['cold_empty_uv_cache_s']} s"],
            ["cold, wheels in uv's cache", f"{results['cold_warm_uv_cache_s']} s"],
            ["warm (found by tag)", f"{results['warm_ms_median']} ms"],
            ["environment size", f"{results['environment_mb']} MB"],
        ],
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
