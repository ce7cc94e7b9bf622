"""Parsing Envoy's stats (busy and queued gauges, the started and 5xx counters, the latency histogram), the
service time measured without queueing and the queue it sizes, the /load document replicas serve each other,
summing replicas where one that does not answer is skipped, and a window's per-version counts and p99."""

import math

import pytest

from router.metrics import (
    Counts,
    Load,
    ServiceTime,
    ServiceTimes,
    collect,
    counted_since,
    load_document,
    loads_from_document,
    next_service_time,
    parse_stats,
    percentile_ms,
    sizing_time,
)
from router.spec import Endpoint, ServiceRoute


def test_parse_stats():
    """The shape Envoy 1.40 answers to /stats?format=json&histogram_buckets=cumulative (recorded)."""
    payload = {"stats": [
        {"name": "cluster.model-models-a.external.upstream_rq_5xx", "value": 13},
        {"name": "cluster.model-models-a.upstream_rq_5xx", "value": 13},
        {"name": "cluster.model-models-a.upstream_rq_active", "value": 3},
        {"name": "cluster.model-models-a.upstream_rq_pending_active", "value": 2},
        {"name": "cluster.model-models-a.upstream_rq_total", "value": 50},
        {"name": "cluster.model-models-b.upstream_rq_active", "value": 1},
        {"histograms": [
            {"name": "cluster.model-models-a.external.upstream_rq_time", "buckets": [{"upper_bound": 0.5, "interval": 0, "cumulative": 1}]},
            {"name": "cluster.model-models-a.upstream_rq_time", "buckets": [
                {"upper_bound": 0.5, "interval": 0, "cumulative": 29}, {"upper_bound": 1, "interval": 0, "cumulative": 41},
                {"upper_bound": 5, "interval": 0, "cumulative": 49}, {"upper_bound": 10, "interval": 0, "cumulative": 50},
            ]},
        ]},
    ]}
    assert parse_stats(payload) == {
        "model-models-a": Load(3, 2, 1, started=50, server_errors=13, latency_buckets=((0.5, 29), (1, 41), (5, 49), (10, 50))),
        "model-models-b": Load(1, 0, 1),
    }


def saturated(service_ms: float, seconds: int, slots: int = 1):
    """Readings (time, started, in service) one per second of `slots` replica slots kept busy by more
    clients than slots: however long the queue behind them grows, these readings do not change (the
    old feed, Envoy's upstream_rq_time, grew with the wait and shrank the queue as it filled)."""
    per_second = slots * 1000 / service_ms
    for t in range(seconds + 1):
        yield float(t), per_second * t, float(slots)


@pytest.mark.parametrize(
    ("service_ms", "clients", "capacity"),
    [
        (0.25, 32, 2000),  # the sample: 1 replica, model 0.25 ms, 32 connections (it fell to 17)
        (10.0, 12, 50),  # 12 clients on a 10 ms model (54-98 % 503 before)
        (0.25, 128, 2000),  # 128 connections (98-99 % 503 before)
        (1000.0, 6, 1),  # six 1 s requests on 1 x 1: 503 for those that cannot start within 500 ms
    ],
)
def test_the_queue_keeps_its_size_as_it_fills(service_ms, clients, capacity):
    """The queue is sized from the time in service, which queueing does not stretch: it never
    shrinks while the queue fills, and holds every client that can start within maxQueueWaitMs."""
    estimate, capacities = None, []
    for t, started, in_service in saturated(service_ms, seconds=20):
        estimate = next_service_time(estimate, t, started, in_service)
        route = ServiceRoute("m", auth="none", max_queue_wait_ms=500, endpoints=(Endpoint("10.0.0.1", 5001),), latency_ms=estimate.ms)
        capacities.append(route.queue_capacity())
    assert estimate.ms == pytest.approx(service_ms, rel=0.01) and capacities[-1] == pytest.approx(capacity, rel=0.01)
    assert capacities[0] == 500  # cold: the fast prior (1 ms)
    # From the prior straight to the measured size as the queue fills, never below it.
    assert capacities in (sorted(capacities), sorted(capacities, reverse=True))
    if service_ms * (clients - 1) <= 500:  # every queued client starts within the wait budget: none refused
        assert min(capacities) >= clients - 1


def test_a_cold_service_queues_an_early_burst():
    """Before any reading a service is assumed fast: a 32-request burst on 1 slot all queues."""
    assert next_service_time(None, 0.0, 0, 0).ms is None
    assert ServiceRoute("m", auth="none", endpoints=(Endpoint("10.0.0.1", 5001),)).queue_capacity() == 500  # >= 31 waiting


@pytest.mark.parametrize(
    ("previous", "now", "started", "in_service", "expected_ms", "why"),
    [
        (ServiceTime(0, 100, 2, 10.0), 1.0, 300, 2, 10.0 * 0.5 + 10.0 * 0.5, "2 in service, 200 departures/s: 10 ms"),
        (ServiceTime(0, 100, 2, None), 1.0, 300, 2, 0.5 * 10.0 + 0.5 * 1.0, "the first measurement moves from the fast prior"),
        (ServiceTime(0, 100, 2, 10.0), 1.0, 104, 2, 0.5 * 500 + 0.5 * 10.0, "4 departures in 1 s with 2 in service: 500 ms"),
        (ServiceTime(0, 10, 1, 5.0), 1.0, 12, 0, 5.0, "a request caught by chance on an idle service says nothing"),
        (ServiceTime(0, 10, 0, 5.0), 1.0, 10, 0, 5.0, "idle: nothing measured"),
        (ServiceTime(0, 10, 1, 5.0), 3.0, 10, 1, 3000.0, "nobody left in 3 s: at least 3 s per request"),
        (ServiceTime(0, 10, 1, 5.0), 0.2, 50, 1, 5.0, "too close to the last reading: not compared"),
        (ServiceTime(0, 900, 1, 7.0), 1.0, 3, 1, 7.0, "the counter went back (Envoy restarted): start over, keep the estimate"),
    ],
)
def test_service_time_from_two_readings(previous, now, started, in_service, expected_ms, why):
    assert next_service_time(previous, now, started, in_service).ms == pytest.approx(expected_ms), why


def test_a_slow_model_is_known_slow_before_its_first_answer():
    """A 60 s model holds its one slot; with no departure the earlier reading is kept and the estimate
    grows with it, so the queue shrinks to 1 instead of staying at the fast prior."""
    estimate = next_service_time(None, 0.0, 1, 1)
    for t in range(1, 6):
        estimate = next_service_time(estimate, float(t), 1, 1)
    assert (estimate.time, estimate.ms) == (0.0, 5000.0)
    route = ServiceRoute("m", auth="none", endpoints=(Endpoint("10.0.0.1", 5001),), latency_ms=estimate.ms)
    assert route.queue_capacity() == 1


@pytest.mark.parametrize(
    ("sized", "estimate", "expected"),
    [(None, None, None), (None, 8.0, 8.0), (10.0, 14.0, 10.0), (10.0, 7.0, 10.0), (10.0, 16.0, 16.0), (10.0, 6.0, 6.0)],
)
def test_a_queue_is_resized_only_when_the_service_time_moves_by_half(sized, estimate, expected):
    """Every resize replaces the Envoy cluster: small drifts keep the size the queue has."""
    assert sizing_time(sized, estimate) == expected


def test_service_times_follow_each_cluster_and_forget_the_gone():
    times = ServiceTimes()
    assert times.observe(0.0, {"a": Load(active=1, started=0), "b": Load(active=1, started=0)})["a"].latency_ms is None
    after = times.observe(1.0, {"a": Load(active=1, started=100)})
    assert after["a"].latency_ms == pytest.approx(5.5) and set(times.estimates) == {"a"}  # 10 ms measured, from the 1 ms prior


def test_a_load_document_reads_back_as_one_replicas_load():
    loads = {"model-models-a": Load(2, 1, 1, 12.5, 40, 3, ((10.0, 30), (25.0, 40))), "model-models-b": Load(0, 0, 1, None)}
    assert loads_from_document(load_document(loads)) == loads
    # A replica of the previous release sends no counters: read as none, not refused.
    assert loads_from_document({"clusters": {"model-models-a": {"active": 1, "pending": 0}}}) == {"model-models-a": Load(1, 0, 1)}


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
        {"clusters": {"model-models-a": {"active": 0, "pending": 0, "server_errors": -3}}},
        {"clusters": {"model-models-a": {"active": 0, "pending": 0, "latency_buckets": [[10, "many"]]}}},
        {"clusters": {"model-models-a": {"active": 0, "pending": 0, "latency_buckets": {"10": 3}}}},
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
    answers["http://10.0.0.1:9090/load"] = {"model-models-a": Load(2, 1, 1, started=40)}
    answers["http://10.0.0.2:9090/load"] = {"model-models-a": Load(1, 0, 1, started=2)}
    assert collect(list(answers), read=read)["model-models-a"].started == 42


def test_collect_sums_counters_and_histograms_exactly():
    """Counters and bucket counts add over router replicas: the leader's sum is the version's whole histogram."""
    answers = {
        "a": {"model-models-a": Load(0, 0, 1, started=10, server_errors=1, latency_buckets=((10.0, 9), (100.0, 10)))},
        "b": {"model-models-a": Load(0, 0, 1, started=30, server_errors=2, latency_buckets=((10.0, 20), (100.0, 30)))},
    }
    total = collect(list(answers), read=lambda url, timeout: answers[url])["model-models-a"]
    assert (total.started, total.server_errors, total.latency_buckets) == (40, 3, ((10.0, 29), (100.0, 40)))


def test_a_window_counts_what_was_served_between_two_comparable_readings():
    before = Load(routers_seen=2, started=100, server_errors=5, latency_buckets=((10.0, 90), (100.0, 100)))
    after = Load(routers_seen=2, started=300, server_errors=7, latency_buckets=((10.0, 190), (100.0, 300)))
    assert counted_since(before, after) == Counts(200, 2, ((10.0, 100), (100.0, 200)))
    # A router missing from one sum (or back in it) would count its whole history; a restarted Envoy's counters go back.
    assert counted_since(before, Load(routers_seen=3, started=900, server_errors=7)) is None
    assert counted_since(before, Load(routers_seen=2, started=50, server_errors=7)) is None


@pytest.mark.parametrize(
    ("buckets", "p99"),
    [
        ((), None),
        (((10.0, 0), (100.0, 0)), None),
        (((10.0, 100), (100.0, 100)), 9.9),  # all within the first bucket: interpolated from 0
        (((10.0, 90), (100.0, 100)), 10.0 + 90.0 * 9 / 10),  # rank 99 of 100 is the 9th of the 10 in (10, 100]
        (((1.0, 0), (5.0, 0), (250.0, 1000)), 5.0 + 245.0 * 0.99),
    ],
)
def test_p99_from_cumulative_buckets(buckets, p99):
    assert percentile_ms(buckets, 0.99) == (pytest.approx(p99) if p99 is not None else None)
