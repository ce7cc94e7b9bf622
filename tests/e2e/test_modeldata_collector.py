"""The model data collector against a real Blob Storage emulator (Azurite on 127.0.0.1)."""

from __future__ import annotations

import datetime
import re
import time

import numpy

from aksinf_runtime import ModelDataCollector, collector
from aksinf_runtime.shipping import Shipper
from aksinf_runtime.sinks import BlobSink
from local.blob_emulator import BlobEmulator
from tests.fixtures_modeldata import numbered, shipper_settings, wait_for

CONTAINER = "modeldata"


BLOB_NAME = re.compile(
    r"^(?P<service>[^/]+)/(?P<model>[^/]+)/(?P<version>[^/]+)/(?P<designation>[^/]+)/"
    r"(?P<yyyy>\d{4})/(?P<mm>\d{2})/(?P<dd>\d{2})/(?P<stem>[^/]+)-\d{8}T\d{6}Z-[^/]+-\d{6}\.jsonl$"
)



def numbers_in(records_by_blob: dict[str, list[dict]]) -> list[int]:
    return sorted(r["n"] for records in records_by_blob.values() for r in records)


def test_batches_land_at_the_v1_path_shape(blob_emulator, fresh_collection, monkeypatch, tmp_path):
    monkeypatch.setenv("AML_MODEL_DC_STORAGE_ENABLED", "true")
    monkeypatch.setenv("AKSINF_SERVICE_NAME", "diabetes")
    monkeypatch.setenv("AKSINF_MODELDATA_DESTINATION", blob_emulator.container_url(CONTAINER))
    monkeypatch.setenv("AKSINF_MODELDATA_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("AKSINF_MODELDATA_BATCH_SECONDS", "0.3")
    inputs = ModelDataCollector("ridge", designation="inputs", feature_names=["age", "bmi"], model_version="7")
    predictions = ModelDataCollector("ridge", designation="predictions", feature_names=["y"], model_version="7")
    correlations = []
    for call in range(3):
        rows = numpy.array([[call, 0.5], [call, 1.5]])
        correlation = inputs.collect(rows)
        assert predictions.collect([[call * 10.0], [call * 10.0 + 1]], correlation) == correlation
        correlations.append(correlation)
    assert collector.shared_shipper().close() is True

    records = blob_emulator.records(CONTAINER)
    assert records, "nothing reached the emulator"
    by_designation: dict[str, list[dict]] = {"inputs": [], "predictions": []}
    for name, lines in records.items():
        match = BLOB_NAME.match(name)
        assert match, name
        assert (match["service"], match["model"], match["version"]) == ("diabetes", "ridge", "7")
        assert match["stem"] == match["designation"]
        for record in lines:
            written = datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
            assert (match["yyyy"], match["mm"], match["dd"]) == (f"{written:%Y}", f"{written:%m}", f"{written:%d}")
        by_designation[match["designation"]] += lines
    assert sorted((r["features"]["age"], r["features"]["bmi"]) for r in by_designation["inputs"]) == [
        (0, 0.5), (0, 1.5), (1, 0.5), (1, 1.5), (2, 0.5), (2, 1.5),
    ]
    assert sorted(r["features"]["y"] for r in by_designation["predictions"]) == [0, 1, 10, 11, 20, 21]
    for call, correlation in enumerate(correlations):
        assert sorted(r["features"]["age"] for r in by_designation["inputs"] if r["correlation_id"] == correlation) == [call, call]
        assert len([r for r in by_designation["predictions"] if r["correlation_id"] == correlation]) == 2


def test_emulator_down_for_a_while_loses_no_record(tmp_path):
    emulator = BlobEmulator(tmp_path / "azurite").start()
    try:
        shipper = Shipper(shipper_settings(tmp_path, emulator.container_url(CONTAINER)), BlobSink(emulator.container_url(CONTAINER)))
        numbered(shipper, range(0, 20))
        wait_for(lambda: shipper.stats.uploaded_records == 20, 15, "the first batch")

        emulator.stop()
        for start in range(20, 120, 20):  # scoring goes on while the endpoint is away
            numbered(shipper, range(start, start + 20))
            time.sleep(0.2)
        wait_for(lambda: shipper.stats.failed_uploads >= 2, 15, "failed uploads while the emulator is down")
        assert list((shipper.dir / "sealed").rglob("*.jsonl")), "batches must wait on disk"
        assert shipper.stats.uploaded_records == 20

        emulator.start()  # same folder, same port
        wait_for(lambda: shipper.stats.uploaded_records == 120, 30, "the backlog after the emulator came back")
        assert shipper.close() is True
        assert numbers_in(emulator.records(CONTAINER)) == list(range(120))  # every record, once
        assert shipper.stats.dropped_records == 0
    finally:
        emulator.stop()


def test_shutdown_flushes_what_is_not_yet_a_full_batch(blob_emulator, tmp_path):
    url = blob_emulator.container_url(CONTAINER)
    shipper = Shipper(shipper_settings(tmp_path, url, batch_seconds=3600), BlobSink(url))
    numbered(shipper, range(50))
    time.sleep(0.3)
    assert shipper.stats.uploaded_records == 0  # an hour-long batch is still open
    assert shipper.close(timeout=10) is True
    assert numbers_in(blob_emulator.records(CONTAINER)) == list(range(50))
    assert list((tmp_path / "spool").iterdir()) == []  # nothing left behind


def test_batches_left_at_shutdown_are_shipped_by_the_next_process(tmp_path):
    emulator = BlobEmulator(tmp_path / "azurite")  # not started: the endpoint is down at shutdown
    url = emulator.container_url(CONTAINER)
    first = Shipper(shipper_settings(tmp_path, url), BlobSink(url))
    numbered(first, range(30))
    assert first.close(timeout=0.5) is False
    assert list((tmp_path / "spool" / first.owner / "sealed").rglob("*.jsonl"))

    with emulator:
        second = Shipper(shipper_settings(tmp_path, url), BlobSink(url))
        wait_for(lambda: second.stats.uploaded_records == 30, 20, "the adopted batches")
        assert second.close() is True
        assert numbers_in(emulator.records(CONTAINER)) == list(range(30))
    assert not (tmp_path / "spool" / first.owner).exists()
