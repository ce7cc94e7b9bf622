"""Parsing Envoy's stats (busy and queued gauges, the median service time), the /load document replicas
serve each other, and summing replicas where one that does not answer is skipped."""

import math

import pytest

from router.metrics import (
    Load,
    collect,
    load_document,
    loads_from_document,
    parse_latency,
    parse_stats,
)


def test_parse_stats():
    payload = {"stats": [
        {"name": "cluster.model-models-a.upstream_rq_active", "value": 3},
        {"name": "cluster.model-models-a.upstream_rq_pending_active", "value": 2},
        {"name": "cluster.model-models-b.upstream_rq_active", "value": 1},
    ]}
    assert parse_stats(payload) == {"model-models-a": (3.0, 2.0), "model-models-b": (1.0, 0.0)}


def test_parse_latency_reads_the_median_service_time():
    quantiles = [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]
    series = lambda name, median: {"name": name, "values": [{"cumulative": median if q == 50 else 1.0} for q in quantiles]}
    payload = {"stats": [
        {"name": "cluster.model-models-a.upstream_rq_active", "value": 0},
        {"histograms": {"supported_quantiles": quantiles, "computed_quantiles": [
            series("cluster.model-models-a.upstream_rq_time", 42.0),
            series("cluster.model-models-a.external.upstream_rq_time", 99.0),
        ]}},
    ]}
    assert parse_latency(payload) == {"model-models-a": 42.0}


def test_a_load_document_reads_back_as_one_replicas_load():
    loads = {"model-models-a": Load(2, 1, 1, 12.5), "model-models-b": Load(0, 0, 1, None)}
    assert loads_from_document(load_document(loads)) == loads


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"clusters": []},
        {"clusters": {"model-models-a": 3}},
        {"clusters": {"model-models-a": {"active": math.nan, "pending": 0}}},
        {"clusters": {"model-models-a": {"active": -1, "pending": 0}}},
        {"clusters": {"model-models-a": {"active": 10**400, "pending": 0}}},
        {"clusters": {"model-models-a": {"active": True, "pending": 0}}},
        {"clusters": {"model-models-a": {"pending": 0}}},
        {"clusters": {"model-models-a": {"active": 0, "pending": 0, "latency_ms": "fast"}}},
    ],
)
def test_a_load_document_the_autoscaler_could_not_use_is_refused(document):
    with pytest.raises(ValueError):
        loads_from_document(document)


def test_collect_sums_replicas_and_skips_one_that_does_not_answer():
    answers = {
        "http://10.0.0.1:9090/load": {"model-models-a": Load(2, 1, 1, 10.0)},
        "http://10.0.0.2:9090/load": {"model-models-a": Load(1, 0, 1, 30.0)},
    }

    def read(url: str, timeout: float) -> dict[str, Load]:
        if url not in answers:
            raise ConnectionRefusedError(url)
        return answers[url]

    total = collect([*answers, "http://10.0.0.3:9090/load"], read=read)
    assert total == {"model-models-a": Load(3, 1, 2, 30.0)}  # the slowest router's service time
