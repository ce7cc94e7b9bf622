"""The service time a cold service is assumed to take (router/spec.py PRIOR_SERVICE_TIME_MS, or the deployment's
expectedServiceTimeMs), with real Envoy on 127.0.0.1: no service time measured yet in either drill, so the prior
alone sizes the queue. Request counts are bounded; nothing here asserts a timer."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from router.spec import ServiceRoute
from tests.fixtures_router import with_endpoints


def score(router, name: str, http: httpx.Client | None = None) -> httpx.Response:
    url = f"{router.url}/api/v1/service/{name}/score"
    return (http or httpx).post(url, content=b'{"data": [1]}', timeout=30)


def test_a_burst_on_a_cold_service_is_served_whole_within_its_wait_budget(envoy_router, fake_model):
    """1 replica x 1 slot, 10 ms per request, maxQueueWaitMs 500: all 30 requests of a burst can start within
    ~300 ms, so none may get 503 though nothing is measured yet (a prior of "1 place per slot" refused most)."""
    model = fake_model(delay=0.01)
    route = with_endpoints(ServiceRoute("cold", auth="none", max_queue_wait_ms=500), model)
    router = envoy_router([route])
    with ThreadPoolExecutor(30) as pool, httpx.Client(limits=httpx.Limits(max_connections=30)) as http:
        statuses = list(pool.map(lambda _: score(router, "cold", http).status_code, range(30)))
    assert statuses == [200] * 30
    assert model.peak_active == 1  # they queued: one at a time on the replica


def test_a_cold_service_that_declares_itself_slow_refuses_what_cannot_start_within_the_budget(envoy_router, fake_model):
    """expectedServiceTimeMs 1000 on a 1 s model, maxQueueWaitMs 500: before any measurement the queue holds one
    request (Envoy's minimum), so of three more requests arriving while one runs, one waits and two get the
    documented 503 at once instead of queueing behind it for seconds."""
    model = fake_model(delay=1.0)
    route = with_endpoints(ServiceRoute("declared", auth="none", max_queue_wait_ms=500, expected_service_time_ms=1000), model)
    assert route.queue_capacity() == 1
    router = envoy_router([route])
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(score, router, "declared")
        time.sleep(0.2)  # the first request holds the replica's only slot
        rest = [pool.submit(score, router, "declared") for _ in range(3)]
        answers = [first.result(), *(f.result() for f in rest)]
    assert sorted(a.status_code for a in answers) == [200, 200, 503, 503]
    assert all("overloaded" in a.json()["error"] for a in answers if a.status_code == 503)
