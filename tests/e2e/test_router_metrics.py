"""Load is summed over router replicas: two real Envoys in front of one slow model on 127.0.0.1, each
replica's gauges read from its status server's /load (Envoy's admin API answers on loopback only)."""

import threading
import time

import httpx

from local.net import free_port
from router.metrics import collect
from router.spec import ServiceRoute
from tests.fixtures_router import with_endpoints


def test_metrics_are_summed_over_router_replicas_from_their_status_servers(envoy_router, router_status, fake_model):
    slow = fake_model(delay=1.5)
    route = with_endpoints(ServiceRoute("alpha", auth="none", max_queue_wait_ms=5000, latency_ms=1000), slow)
    first, second = envoy_router([route]), envoy_router([route])
    load_urls = [f"http://127.0.0.1:{router_status(router).port}/load" for router in (first, second)]
    threads = [
        threading.Thread(target=lambda url=router.url: httpx.post(f"{url}/api/v1/service/alpha/score", content=b"{}", timeout=10))
        for router in (first, second, second)
    ]
    for thread in threads:
        thread.start()
    dead = f"http://127.0.0.1:{free_port()}/load"  # a router replica that is down is skipped
    # One replica slot (per router): 1 active on each router, 1 queued on the second, once all three arrived
    # (read until then, within the 1.5 s the model holds them: a loaded machine delays the clients).
    deadline = time.monotonic() + 1.2
    while True:
        alpha = collect([*load_urls, dead]).get("model-models-alpha")
        seen = (alpha.active, alpha.pending, alpha.routers_seen) if alpha else None
        if seen == (2.0, 1.0, 2) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert seen == (2.0, 1.0, 2)
