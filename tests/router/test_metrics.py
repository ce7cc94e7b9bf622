"""Parsing Envoy's stats: busy and queued gauges, the median service time."""

from router.metrics import parse_stats


def test_parse_stats():
    payload = {"stats": [
        {"name": "cluster.model-models-a.upstream_rq_active", "value": 3},
        {"name": "cluster.model-models-a.upstream_rq_pending_active", "value": 2},
        {"name": "cluster.model-models-b.upstream_rq_active", "value": 1},
    ]}
    assert parse_stats(payload) == {"model-models-a": (3.0, 2.0), "model-models-b": (1.0, 0.0)}


def test_parse_latency_reads_the_median_service_time():
    from router.metrics import parse_latency

    quantiles = [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]
    series = lambda name, median: {"name": name, "values": [{"cumulative": median if q == 50 else 1.0} for q in quantiles]}  # noqa: E731
    payload = {"stats": [
        {"name": "cluster.model-models-a.upstream_rq_active", "value": 0},
        {"histograms": {"supported_quantiles": quantiles, "computed_quantiles": [
            series("cluster.model-models-a.upstream_rq_time", 42.0),
            series("cluster.model-models-a.external.upstream_rq_time", 99.0),
        ]}},
    ]}
    assert parse_latency(payload) == {"model-models-a": 42.0}
