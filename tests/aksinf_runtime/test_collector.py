"""The model data collector and shipper without storage: folder sinks, crashes, bounds, bad settings."""

from __future__ import annotations

import fcntl
import os
import time

import numpy
import pytest

from aksinf_runtime import ModelDataCollector, collector
from aksinf_runtime.shipping import Shipper, ShipperSettings
from aksinf_runtime.sinks import FolderSink, check_destination
from tests.fixtures_modeldata import numbered, shipper_settings, wait_for


def test_a_killed_process_leaves_whole_lines_and_a_live_one_is_left_alone(tmp_path):
    spool = tmp_path / "spool"
    dead = spool / "deadhost-41-0000aaaa" / "open" / "svc" / "m" / "1" / "inputs" / "2026" / "11" / "25"
    dead.mkdir(parents=True)
    (dead / "inputs-20261125T000000Z-deadhost-41-0000aaaa-000000.jsonl").write_bytes(b'{"n":0}\n{"n":1}\n{"n":2, "tor')
    alive = spool / "livehost-42-0000bbbb" / "sealed" / "svc"
    alive.mkdir(parents=True)
    (alive / "x.jsonl").write_bytes(b'{"n":99}\n')
    lock = os.open(spool / "livehost-42-0000bbbb" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        out = tmp_path / "out"
        shipper = Shipper(shipper_settings(tmp_path, out.as_uri()), FolderSink(out))
        assert shipper.close() is True
        shipped = [p.read_bytes() for p in out.rglob("*.jsonl")]
        assert shipped == [b'{"n":0}\n{"n":1}\n']
        assert (alive / "x.jsonl").exists()  # its owner holds the lock
    finally:
        os.close(lock)


def test_memory_is_bounded_and_overflow_is_counted(tmp_path):
    shipper = Shipper(shipper_settings(tmp_path, None, flush_interval=30, max_pending_records=5), None)
    accepted = [shipper.enqueue("svc/m/1/inputs/2026/11/25/inputs", '{"n":0}\n', 1) for _ in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert shipper.stats.dropped_records == 3
    assert shipper.close(timeout=0.2) is False  # no destination: the five stay on disk for later


def test_a_full_spool_keeps_records_in_memory_until_uploads_free_space(tmp_path):
    out = tmp_path / "out"
    shipper = Shipper(shipper_settings(tmp_path, out.as_uri(), max_spool_bytes=1), None)  # no sink yet: nothing drains
    numbered(shipper, range(3))
    wait_for(lambda: shipper.stats.spooled_bytes > 0, 5, "the first records on disk")
    numbered(shipper, range(3, 6))
    time.sleep(0.3)
    assert shipper._pending_records == 3  # over budget: not written
    shipper.sink = FolderSink(out)
    wait_for(lambda: shipper.stats.uploaded_records == 6, 10, "all records once space was freed")
    assert shipper.close() is True
    assert sorted(int(line[5:-1]) for p in out.rglob("*.jsonl") for line in p.read_text().splitlines()) == list(range(6))


def test_collection_off_writes_nothing(fresh_collection, monkeypatch, tmp_path):
    monkeypatch.delenv("AML_MODEL_DC_STORAGE_ENABLED", raising=False)
    monkeypatch.setenv("AKSINF_MODELDATA_SPOOL", str(tmp_path / "spool"))
    dc = ModelDataCollector("ridge", designation="inputs")
    assert dc.enabled is False
    assert dc.collect([[1, 2]], "given-id") == "given-id"
    assert collector._shipper is None and not (tmp_path / "spool").exists()


def test_bad_collector_arguments_are_all_reported(monkeypatch):
    monkeypatch.delenv("AML_MODEL_DC_STORAGE_ENABLED", raising=False)
    with pytest.raises(ValueError) as caught:
        ModelDataCollector("my/model", designation="", feature_names=["a", ""], model_version="..")
    message = str(caught.value)
    for expected in ("model_name='my/model'", "designation=''", "model_version='..'", "feature_names=['a', '']"):
        assert expected in message


def test_bad_environment_is_reported_with_every_variable():
    with pytest.raises(ValueError) as caught:
        ShipperSettings.from_environment({
            "AKSINF_MODELDATA_DESTINATION": "http://storage.example.com/acct/modeldata",
            "AKSINF_MODELDATA_BATCH_SECONDS": "soon",
            "AKSINF_MODELDATA_SPOOL_LIMIT_BYTES": "-1",
        })
    message = str(caught.value)
    assert "AKSINF_MODELDATA_DESTINATION='http://storage.example.com/acct/modeldata'" in message and "use https" in message
    assert "AKSINF_MODELDATA_BATCH_SECONDS='soon'" in message
    assert "AKSINF_MODELDATA_SPOOL_LIMIT_BYTES='-1'" in message


@pytest.mark.parametrize(
    "destination, ok",
    [
        ("file:///var/data", True),
        ("https://acct.blob.core.windows.net/modeldata", True),
        ("http://127.0.0.1:10000/devstoreaccount1/modeldata", True),
        ("http://127.0.0.1:10000/devstoreaccount1", False),
        ("http://10.0.0.5:10000/devstoreaccount1/modeldata", False),
        ("https://acct.blob.core.windows.net", False),
        ("s3://bucket/modeldata", False),
    ],
)
def test_destinations(destination, ok):
    if ok:
        check_destination(destination)
    else:
        with pytest.raises(ValueError):
            check_destination(destination)


def test_rows_follow_v1_one_record_per_row():
    assert collector.rows_of(numpy.array([[1, 2], [3, 4]]), ["a", "b"]) == [{"features": {"a": 1, "b": 2}}, {"features": {"a": 3, "b": 4}}]
    assert collector.rows_of([1, 2], ["a", "b"]) == [{"features": {"a": 1, "b": 2}}]  # one flat row
    assert collector.rows_of([1.5, 2.5], None) == [{"data": 1.5}, {"data": 2.5}]
    assert collector.rows_of({"text": "hi"}, None) == [{"data": {"text": "hi"}}]
    assert collector.rows_of([[1, 2, 3]], ["a", "b"]) == [{"data": [1, 2, 3]}]  # names that do not fit are not guessed


def test_a_burst_is_cut_into_batches_of_the_configured_size(tmp_path):
    out = tmp_path / "out"
    shipper = Shipper(shipper_settings(tmp_path, out.as_uri(), flush_interval=0.5, batch_seconds=3600, batch_bytes=100), FolderSink(out))
    numbered(shipper, range(40))  # ~320 bytes, all in one flush
    assert shipper.close() is True
    blobs = sorted(out.rglob("*.jsonl"))
    assert len(blobs) >= 3 and all(len(b.read_bytes()) <= 100 + 8 for b in blobs)
    assert sorted(int(line[5:-1]) for b in blobs for line in b.read_text().splitlines()) == list(range(40))


def test_adopted_batches_count_once_against_the_spool_bound(tmp_path):
    orphan = tmp_path / "spool" / "deadhost-7-0000cccc" / "sealed" / "svc"
    orphan.mkdir(parents=True)
    (orphan / "a.jsonl").write_bytes(b'{"n":0}\n' * 10)
    shipper = Shipper(shipper_settings(tmp_path, None), None)  # no sink: nothing leaves the spool
    assert shipper.stats.adopted_segments == 1
    assert shipper.stats.spooled_bytes == 80
    assert shipper.close(timeout=0.1) is False
