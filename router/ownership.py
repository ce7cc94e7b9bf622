"""Service-wide limits across router replicas: which router holds which of a service's replica slots.

`maxConcurrentRequestsPerContainer` (the cap, C) and the queue must hold per model replica and per
service however many routers run (R). Each Envoy can only count its own connections, so the cap is
split into per-router slot counts that add up to exactly C, by rendezvous hashing of (service, router)
over the live routers (`slot_shares`): every router computes the same split from the same peer list,
with no coordination, and a router joining or leaving moves only the slots it gains or held.

- C >= R: every router holds C // R slots per replica, and the C % R routers ranked first for the
  service one more; no slot is lost to rounding (static floor shares lost up to R - 1).
- C < R: the C first-ranked routers hold one slot each (the service's *owners*); every other router
  holds none and forwards the service's requests to the owners' peer listener
  (`RouterSettings.peer_port`), whose route table serves every service from this router's own
  replica slots and never forwards again (no loops, whatever the routers' views).

The forwarding hop carries the request as the client sent it (the key or token included) and the
owner authenticates it exactly as on its scoring listener, so the client gets the owner's answer
(same status, headers and JSON body): the hop hides nothing and trusts nothing. It is plain HTTP
between router pods, admitted by a NetworkPolicy from router pods only (components/router_manifests.py).

A queue is sized by each router from its own slots (ServiceRoute.queue_capacity), so the owners'
queues together hold what one service-wide queue would; a forwarding router queues nothing itself.

What the split does not cover: while the membership changes (a router joins, leaves or restarts;
each router re-reads it every reconcile round, about a second) the old and the new owner may both run
a request for up to one round plus those requests' own time; a router that holds no slot keeps one for
requests a peer whose view is a round behind forwards to it (`local_slots`). A version of an endpoint
(ServiceRoute.endpoint) is reached only through its endpoint's weighted route, which forwards nothing:
its routers hold the exact split when C >= R, and one slot each when C < R. Without a peer list
(local mode, or before the first read of the API) every router holds the static floor share of
`RouterSettings.router_replicas` (ServiceRoute.concurrency_share).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from router.spec import Endpoint, RouterSettings, ServiceRoute


def rendezvous_order(key: str, routers: Sequence[Endpoint]) -> list[Endpoint]:
    """`routers` ranked for `key` by highest random weight (rendezvous hashing): the order every router
    computes alike from the same set, in any input order; removing one router leaves the others' order."""
    def weight(router: Endpoint) -> tuple[bytes, Endpoint]:
        return hashlib.sha256(f"{key}|{router}".encode()).digest(), router

    return sorted(set(routers), key=weight, reverse=True)


def slot_shares(cap: int, key: str, routers: Sequence[Endpoint]) -> dict[Endpoint, int]:
    """Each router's slots per model replica for a service capped at `cap`: they add up to exactly
    `cap` (every router holds cap // R, the first cap % R in rendezvous order one more). Empty: no routers."""
    ranked = rendezvous_order(key, routers)
    if not ranked:
        return {}
    base, extra = divmod(max(0, cap), len(ranked))
    return {router: base + (1 if rank < extra else 0) for rank, router in enumerate(ranked)}


@dataclass(frozen=True)
class Ownership:
    """One router's part of one service: `slots` per model replica (0: it forwards the service's
    requests), and `owners`, the routers that hold slots, in rendezvous order (the forwarding targets)."""

    slots: int
    owners: tuple[Endpoint, ...] = ()

    @property
    def forwards(self) -> bool:
        return self.slots == 0 and bool(self.owners)

    @property
    def local_slots(self) -> int:
        """The slots of this router's own cluster for the service: its share, and at least one, for a request
        forwarded to it by a peer whose view of the membership is a round behind."""
        return max(1, self.slots)


def ownership(route: ServiceRoute, settings: RouterSettings) -> Ownership:
    """This router's part of `route` from the live peer list in `settings` (`peers`, this router being
    `peer_identity`). A router missing from the list (starting, or not ready yet) holds nothing and
    forwards to the listed owners, as its peers expect. No peer list: the static floor share."""
    me = settings.peer_identity
    if not settings.peers or me is None:
        return Ownership(route.concurrency_share(settings.router_replicas))
    shares = slot_shares(route.max_concurrent, route.cluster_name, settings.peers)
    if route.endpoint is not None:
        # A version of an endpoint has no route of its own to forward: the endpoint's route spreads
        # requests over its versions' clusters. Each router holds its exact share, at least one slot.
        return Ownership(max(1, shares.get(me, 0)))
    owners = tuple(router for router, slots in shares.items() if slots > 0)
    return Ownership(shares.get(me, 0), owners)
