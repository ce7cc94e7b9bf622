"""Service-wide limits with several router replicas (issue #14's drill): three real Envoys on 127.0.0.1,
each with its own config directory and peer listener, in front of one model replica capped at 1 request.
The routers split the cap by rendezvous hashing (router/ownership.py): one owns the slot, the others forward
to its peer listener, so clients hitting all three never put more than 1 request on the replica, and every
request is answered: 200, or the documented 503 of a full queue. Loops are bounded in count and time."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from local.envoy_process import EnvoyProcess
from local.net import LOOPBACK, free_port
from router.envoy_config import render_dynamic
from router.envoy_files import ConfigWriter, validate_config
from router.ownership import ownership
from router.spec import Endpoint, JwtSettings, RouterSettings, ServiceRoute, TlsSettings
from tests.fixtures_router import PRIMARY, FakeModel, render_settings

ROUTERS = 3
CAPPED, QUEUED = "capped", "tiny-queue"


@dataclass
class Router:
    settings: RouterSettings
    envoy: EnvoyProcess

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.settings.listen_port}"

    @property
    def identity(self) -> Endpoint:
        assert self.settings.peer_identity is not None
        return self.settings.peer_identity


@pytest.fixture(scope="module")
def model():
    replica = FakeModel(delay=0.05).start()
    yield replica
    replica.stop()


@pytest.fixture(scope="module")
def slow_model():
    replica = FakeModel(delay=0.3).start()
    yield replica
    replica.stop()


def services(model: FakeModel, slow_model: FakeModel) -> list[ServiceRoute]:
    """`capped`: key auth, 1 request per replica, a queue long enough for every client. `tiny-queue`: 1 request
    per replica and a 1 ms wait budget, so the service-wide queue holds 1 request (ServiceRoute.queue_capacity)."""
    return [
        ServiceRoute(CAPPED, keys=(PRIMARY,), max_concurrent=1, max_queue_wait_ms=30_000, endpoints=(model.endpoint,)),
        ServiceRoute(QUEUED, auth="none", max_concurrent=1, max_queue_wait_ms=1, endpoints=(slow_model.endpoint,)),
    ]


@pytest.fixture(scope="module")
def routers(tmp_path_factory, model, slow_model):
    base = tmp_path_factory.mktemp("routers")
    peer_ports = [free_port() for _ in range(ROUTERS)]
    peers = tuple(Endpoint(LOOPBACK, port) for port in peer_ports)
    started: list[Router] = []
    try:
        for i, port in enumerate(peer_ports):
            settings = RouterSettings(
                config_dir=base / f"envoy-{i}",
                listen_port=free_port(),
                admin_port=free_port(),
                access_log_path=str(base / f"access-{i}.log"),
                peer_port=port,
                peer_address=LOOPBACK,
                peers=peers,
            )
            writer = ConfigWriter(settings.config_dir)
            writer.write(services(model, slow_model), settings)
            started.append(Router(settings, EnvoyProcess(writer.write_bootstrap(settings), settings.admin_port).start()))
        for router in started:  # both listeners load from files after Envoy is up: wait for each (bounded)
            for port in (router.settings.listen_port, router.settings.peer_port):
                for _ in range(100):
                    try:
                        if httpx.get(f"http://{LOOPBACK}:{port}/", timeout=1).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
                else:
                    raise RuntimeError(f"router listener {port} never answered")
        yield started
    finally:
        for router in started:
            router.envoy.stop()


def owner_of(routers: list[Router], name: str) -> Router:
    route = ServiceRoute(name, max_concurrent=1)  # who owns a service depends on its name and cap only
    owners = [router for router in routers if ownership(route, router.settings).slots]
    assert len(owners) == 1
    return owners[0]


def score(router: Router, name: str, key: str | None = PRIMARY) -> httpx.Response:
    headers = {"Authorization": key} if key else {}
    return httpx.post(f"{router.url}/api/v1/service/{name}/score", content=b'{"data": [1]}', headers=headers, timeout=30)


def test_three_routers_never_put_more_than_one_request_on_a_replica_capped_at_one(routers, model):
    """9 clients, 3 on each router, 3 requests each: all answered 200, never more than 1 in flight on the
    replica (floor shares put 3 there), and the two routers that own no slot sent theirs through the owner."""
    before = len(model.requests)
    with ThreadPoolExecutor(9) as pool:
        futures = [pool.submit(lambda r=router: [score(r, CAPPED).status_code for _ in range(3)]) for router in routers for _ in range(3)]
        statuses = [status for future in futures for status in future.result()]
    assert statuses == [200] * 27
    assert model.peak_active == 1
    assert len(model.requests) - before == 27
    assert all("authorization" not in {h.lower() for h in request["headers"]} for request in model.requests)  # the owner hides the key


def test_the_owner_authenticates_a_forwarded_request_and_its_answer_reaches_the_client_unchanged(routers):
    owner = owner_of(routers, CAPPED)
    forwarder = next(router for router in routers if router is not owner)
    direct, forwarded = score(owner, CAPPED, key=None), score(forwarder, CAPPED, key=None)
    assert direct.status_code == forwarded.status_code == 401
    assert forwarded.headers["content-type"] == direct.headers["content-type"] == "application/json"
    assert {k: v for k, v in forwarded.json().items() if k != "requestId"} == {k: v for k, v in direct.json().items() if k != "requestId"}
    assert score(forwarder, CAPPED, key="w" * 32).status_code == 401
    request_id = "0b7a2f2e-4c55-4b8e-9d55-0d3f5ad1c0de"
    answer = httpx.post(f"{forwarder.url}/api/v1/service/{CAPPED}/score", content=b"{}", headers={"Authorization": PRIMARY, "x-request-id": request_id}, timeout=30)
    assert answer.status_code == 200 and answer.headers["x-request-id"] == request_id


def test_a_full_service_wide_queue_answers_the_documented_503_through_any_router(routers, slow_model):
    """1 slot and a queue of 1 for the whole service: of 6 concurrent requests (2 per router) at most 2 are
    served at once or queued; the rest get the owner's 503 "queue is full", and never 2 on the replica."""
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda router: score(router, QUEUED, key=None), [router for router in routers for _ in range(2)]))
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 503} and 200 in statuses and 503 in statuses, statuses
    assert all("queue is full" in answer.json()["error"] for answer in answers if answer.status_code == 503)
    assert slow_model.peak_active == 1


def test_envoy_accepts_the_forwarding_config_with_tls_and_token_auth(tmp_path):
    """The forwarder's files (peer cluster, forwarding route, peer listener without TLS) and the owner's."""
    peers = tuple(Endpoint("10.0.0.1", 8081 + i) for i in range(ROUTERS))
    jwt = JwtSettings("https://issuer.example", ("api://aks-inference",), jwks_uri="https://login.microsoftonline.com/tenant/discovery/v2.0/keys")
    cert_dir = tmp_path / "tls"
    route = ServiceRoute("tokened", auth="token", max_concurrent=1, endpoints=(Endpoint("10.1.0.1", 5001),))
    for me in peers:
        settings = render_settings(tmp_path, jwt=jwt, tls=TlsSettings(str(cert_dir / "tls.crt"), str(cert_dir / "tls.key")), peer_port=me.port, peer_address=me.host, peers=peers)
        files = render_dynamic([route], settings)
        files.pop("sds-tls.json")  # no certificate on disk: the TLS secret is not what is checked here
        for listener in files["lds.json"]["resources"]:
            listener["filter_chains"][0].pop("transport_socket", None)
        validate_config(files, settings)
