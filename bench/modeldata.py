"""Model data collection: what `collect()` costs the scoring path, and upload throughput to Azurite.

1. The sample's `run()` (Ridge on two rows, collecting inputs and predictions) called in-process,
   interleaved call by call with collection on (shipping to Azurite on 127.0.0.1) and off (v1's
   default: `collect()` returns at once). Baseline = collection off, same run, same process.
2. Upload throughput: records enqueued as fast as one thread can, then timed until every record
   is in the emulator (memory -> spool -> blob), with the default 4 MiB batches.

Bounded: a fixed number of calls and records, each phase also capped in time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import print_table, write_results

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "models" / "diabetes"
CALLS = 4000
RECORDS = 100_000
PHASE_SECONDS = 120
CONTAINER = "modeldata"


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_us": round(pick(0.50) * 1e6, 1), "p99_us": round(pick(0.99) * 1e6, 1), "mean_us": round(statistics.fmean(ordered) * 1e6, 1)}


def _load_sample():
    os.environ["AZUREML_MODEL_DIR"] = str(SAMPLE / "model")
    spec = importlib.util.spec_from_file_location("bench_sample_score", SAMPLE / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scoring_overhead(emulator, spool: Path) -> dict:
    from aksinf_runtime import ModelDataCollector, collector

    os.environ.update({
        "AML_MODEL_DC_STORAGE_ENABLED": "true",
        "AKSINF_SERVICE_NAME": "diabetes",
        "AKSINF_MODELDATA_DESTINATION": emulator.container_url(CONTAINER),
        "AKSINF_MODELDATA_SPOOL": str(spool),
        "AKSINF_MODELDATA_BATCH_SECONDS": "1",
    })
    score = _load_sample()
    score.init()
    on = (score.inputs_dc, score.predictions_dc)
    os.environ["AML_MODEL_DC_STORAGE_ENABLED"] = "false"
    off = (
        ModelDataCollector("diabetes-ridge", designation="inputs", feature_names=score.FEATURE_NAMES, model_version="1"),
        ModelDataCollector("diabetes-ridge", designation="predictions", feature_names=["progression"], model_version="1"),
    )
    body = (SAMPLE / "sample-request.json").read_text()
    timings: dict[str, list[float]] = {"off": [], "on": []}
    deadline = time.monotonic() + PHASE_SECONDS
    for call in range(CALLS):
        if time.monotonic() > deadline:
            break
        for mode in (("on", "off") if call % 2 else ("off", "on")):  # alternate who goes first
            score.inputs_dc, score.predictions_dc = on if mode == "on" else off
            start = time.perf_counter()
            score.run(body)
            timings[mode].append(time.perf_counter() - start)
    shipper = collector.shared_shipper()
    flushed = shipper.close(timeout=30)
    stored = sum(len(records) for records in emulator.records(CONTAINER).values())
    return {
        "calls_per_mode": len(timings["on"]),
        "collection_off": _percentiles(timings["off"]),
        "collection_on": _percentiles(timings["on"]),
        "records_collected": shipper.stats.uploaded_records,
        "records_in_emulator": stored,
        "dropped": shipper.stats.dropped_records,
        "flushed_at_shutdown": flushed,
    }


def upload_throughput(emulator, spool: Path) -> dict:
    from aksinf_runtime.shipping import Shipper, ShipperSettings
    from aksinf_runtime.sinks import BlobSink

    url = emulator.container_url("throughput")
    shipper = Shipper(ShipperSettings(spool_root=spool, destination=url, batch_seconds=0.5), BlobSink(url))
    line = json.dumps({"time": "2026-11-25T00:00:00.000000Z", "correlation_id": "0" * 36, "features": {f"f{i}": 0.123456 for i in range(10)}}) + "\n"
    start = time.perf_counter()
    for _ in range(RECORDS):
        shipper.enqueue("bench/model/1/inputs/2026/11/25/inputs", line, 1)
    enqueued = time.perf_counter() - start
    deadline = time.monotonic() + PHASE_SECONDS
    while shipper.stats.uploaded_records < RECORDS and time.monotonic() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    uploaded = shipper.stats.uploaded_records
    batches = shipper.stats.uploaded_batches
    shipper.close(timeout=10)
    megabytes = uploaded * len(line) / 1e6
    return {
        "records": RECORDS,
        "record_bytes": len(line),
        "uploaded": uploaded,
        "batches": batches,
        "enqueue_records_per_s": round(RECORDS / enqueued),
        "end_to_end_seconds": round(elapsed, 2),
        "upload_records_per_s": round(uploaded / elapsed),
        "upload_mb_per_s": round(megabytes / elapsed, 2),
    }


def main() -> None:
    from local.blob_emulator import BlobEmulator

    with tempfile.TemporaryDirectory(prefix="bench-modeldata-") as tmp, BlobEmulator(Path(tmp) / "azurite") as emulator:
        overhead = scoring_overhead(emulator, Path(tmp) / "spool-scoring")
        throughput = upload_throughput(emulator, Path(tmp) / "spool-throughput")
    path = write_results("modeldata", {"scoring_overhead": overhead, "upload_throughput": throughput})
    off, on = overhead["collection_off"], overhead["collection_on"]
    print_table(
        ["run() of the sample", "p50 µs", "p99 µs", "mean µs"],
        [["collection off (baseline)", off["p50_us"], off["p99_us"], off["mean_us"]],
         ["collection on (Azurite)", on["p50_us"], on["p99_us"], on["mean_us"]],
         ["overhead", round(on["p50_us"] - off["p50_us"], 1), round(on["p99_us"] - off["p99_us"], 1), round(on["mean_us"] - off["mean_us"], 1)]],
    )
    print(f"\ncollected {overhead['records_collected']} records, {overhead['records_in_emulator']} in the emulator, dropped {overhead['dropped']}")
    print_table(
        ["upload to Azurite", "records", "batches", "enqueue rec/s", "upload rec/s", "MB/s"],
        [["4 MiB batches", throughput["uploaded"], throughput["batches"], throughput["enqueue_records_per_s"],
          throughput["upload_records_per_s"], throughput["upload_mb_per_s"]]],
    )
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
