"""Service-wide limits across router replicas (router/ownership.py) and how Envoy's files carry them
(router/envoy_config.py): pure, no processes. The 3-Envoy drill is tests/e2e/test_router_replicas.py."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace

import pytest

from router.envoy_config import (
    API_KEY_FILTER,
    BUFFER_FILTER,
    PEER_ROUTE_CONFIG,
    PEER_ROUTES_FILE,
    ROUTE_CONFIG,
    render_dynamic,
)
from router.ownership import Ownership, ownership, rendezvous_order, slot_shares
from router.spec import Endpoint, ServiceRoute
from tests.fixtures_router import PRIMARY, render_settings

ROUTERS = tuple(Endpoint(f"10.0.0.{i}", 8081) for i in range(1, 6))


def as_router(me: Endpoint, peers=ROUTERS[:3], tmp_path=None, **kwargs):
    return render_settings(tmp_path, peer_port=me.port, peer_address=me.host, peers=tuple(peers), **kwargs)


@pytest.mark.parametrize(("cap", "routers"), list(itertools.product([1, 2, 3, 4, 5, 7, 100], [1, 2, 3, 5])))
def test_the_routers_shares_add_up_to_exactly_the_cap(cap, routers):
    shares = slot_shares(cap, "model-models-svc", ROUTERS[:routers])
    assert sum(shares.values()) == cap  # never more (the guarantee), never fewer (no slot lost to rounding)
    assert max(shares.values()) - min(shares.values()) <= 1
    assert set(shares) == set(ROUTERS[:routers])


def test_every_router_computes_the_same_split_from_the_peer_list_in_any_order():
    forward = slot_shares(2, "model-models-svc", ROUTERS)
    assert slot_shares(2, "model-models-svc", ROUTERS[::-1]) == forward
    assert slot_shares(2, "model-models-svc", ROUTERS + ROUTERS[:2]) == forward  # a duplicate address counts once


def test_a_router_leaving_moves_only_the_slots_it_held():
    """Rendezvous hashing: the others keep their order, so owners that stay keep their slots."""
    key = "model-models-svc"
    order = rendezvous_order(key, ROUTERS)
    for gone in ROUTERS:
        assert rendezvous_order(key, [r for r in ROUTERS if r != gone]) == [r for r in order if r != gone]


def test_owners_spread_over_the_routers_across_services():
    """With cap 1 and 3 routers, each service has one owner; over many services each router owns a fair part."""
    owners = Counter(rendezvous_order(f"model-models-svc{i}", ROUTERS[:3])[0] for i in range(300))
    assert set(owners) == set(ROUTERS[:3]) and min(owners.values()) > 60


def test_below_the_router_count_one_router_owns_the_slot_and_the_others_forward_to_it(tmp_path):
    route = ServiceRoute("capped", max_concurrent=1)
    parts = {me: ownership(route, as_router(me, tmp_path=tmp_path)) for me in ROUTERS[:3]}
    owners = [me for me, part in parts.items() if part.slots == 1]
    assert len(owners) == 1
    assert all(part.owners == (owners[0],) for part in parts.values())
    assert [part.forwards for part in parts.values()].count(True) == 2
    assert all(part.local_slots == 1 for part in parts.values())  # a forward that arrives a round late still has a slot


def test_a_router_missing_from_the_peer_list_holds_nothing_and_forwards(tmp_path):
    """Starting, or not ready yet: its peers do not count it, so neither does it."""
    stranger = Endpoint("10.0.0.9", 8081)
    part = ownership(ServiceRoute("svc", max_concurrent=4), as_router(stranger, tmp_path=tmp_path))
    assert part.slots == 0 and part.forwards and len(part.owners) == 3


def test_without_a_peer_list_each_router_holds_the_static_floor_share(tmp_path):
    route = ServiceRoute("svc", max_concurrent=4)
    assert ownership(route, render_settings(tmp_path, router_replicas=3)) == Ownership(1)
    assert ownership(route, render_settings(tmp_path)) == Ownership(4)
    assert not ownership(replace(route, max_concurrent=1), render_settings(tmp_path, router_replicas=3)).forwards


def test_a_version_of_an_endpoint_never_forwards(tmp_path):
    """Reached only through its endpoint's weighted route: it holds its share, at least one slot."""
    version = ServiceRoute("blue", max_concurrent=1, endpoint="shop")
    parts = [ownership(version, as_router(me, tmp_path=tmp_path)) for me in ROUTERS[:3]]
    assert all(part == Ownership(1) for part in parts)


# --------------------------------------------------------------------------- Envoy's files


def route_named(files: dict, table: str, name: str) -> dict:
    config = next(r for r in files[PEER_ROUTES_FILE if table == PEER_ROUTE_CONFIG else "rds.pb"]["resources"] if r["name"] == table)
    return next(r for r in config["virtual_hosts"][0]["routes"] if r["name"] == name)


def cluster_named(files: dict, name: str) -> dict | None:
    return next((c for c in files["cds.pb"]["resources"] if c["name"] == name), None)


def test_an_owner_serves_from_its_own_slots_and_a_forwarder_sends_the_request_untouched_to_the_owner(tmp_path):
    route = ServiceRoute("capped", keys=(PRIMARY,), max_concurrent=1, max_queue_wait_ms=500, scoring_timeout_ms=2000, endpoints=(Endpoint("10.1.0.1", 5001),))
    parts = {me: ownership(route, as_router(me, tmp_path=tmp_path)) for me in ROUTERS[:3]}
    owner = next(me for me, part in parts.items() if part.slots)
    forwarder = next(me for me, part in parts.items() if not part.slots)

    owned = render_dynamic([route], as_router(owner, tmp_path=tmp_path))
    assert route_named(owned, ROUTE_CONFIG, "capped")["route"]["cluster"] == route.cluster_name
    assert cluster_named(owned, "peer-models-capped") is None
    breakers = cluster_named(owned, route.cluster_name)["circuit_breakers"]
    assert breakers["per_host_thresholds"] == [{"max_connections": 1}]
    assert breakers["thresholds"][0]["max_pending_requests"] == route.queue_capacity(share=1)

    files = render_dynamic([route], as_router(forwarder, tmp_path=tmp_path))
    hop = route_named(files, ROUTE_CONFIG, "capped")
    assert hop["route"]["cluster"] == "peer-models-capped" and "prefix_rewrite" not in hop["route"]
    assert hop["route"]["timeout"] == "3.500s"  # queue wait + scoring timeout + margin: the owner answers first
    assert hop["typed_per_filter_config"][API_KEY_FILTER]["disabled"] is True  # the owner authenticates, key kept
    assert hop["typed_per_filter_config"][BUFFER_FILTER]["disabled"] is True
    peers = cluster_named(files, "peer-models-capped")["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [p["endpoint"]["address"]["socket_address"] for p in peers] == [{"address": owner.host, "port_value": owner.port}]
    # The peer table serves locally with the service's own auth: a forwarded request is never forwarded again.
    served = route_named(files, PEER_ROUTE_CONFIG, "capped")
    assert served["route"]["cluster"] == route.cluster_name and served["route"]["prefix_rewrite"] == "/"
    assert served["typed_per_filter_config"][API_KEY_FILTER]["credentials"][0]["key"] == PRIMARY
    listeners = {listener["name"]: listener for listener in files["lds.json"]["resources"]}
    assert listeners["peer"]["address"]["socket_address"]["port_value"] == forwarder.port
    hcm = listeners["peer"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["rds"]["route_config_name"] == PEER_ROUTE_CONFIG and hcm["rds"]["config_source"]["path_config_source"]["path"].endswith(PEER_ROUTES_FILE)


def test_refused_services_are_never_forwarded_and_no_peer_listener_without_a_peer_port(tmp_path):
    refused = ServiceRoute("broken", auth="bogus", max_concurrent=1)
    files = render_dynamic([refused], as_router(ROUTERS[0], tmp_path=tmp_path))
    assert "direct_response" in route_named(files, ROUTE_CONFIG, "broken")
    assert [c["name"] for c in files["cds.pb"]["resources"]] == []
    plain = render_dynamic([ServiceRoute("svc", auth="none", max_concurrent=1)], render_settings(tmp_path, router_replicas=3))
    assert [listener["name"] for listener in plain["lds.json"]["resources"]] == ["scoring"]
    assert [table["name"] for table in plain["rds.pb"]["resources"]] == [ROUTE_CONFIG] and PEER_ROUTES_FILE not in plain
