"""The traffic of a versioned endpoint, as the router renders it: pure functions, no Envoy types.

`endpoint_traffic(entry)` turns a validated `aks-inference:models` entry with `versions`
(contract/endpoints.py) into per-version integer weights for Envoy weighted clusters, summing to exactly
100 with the default version taking what the others leave, and the percentage of requests each shadow
version receives as a mirror copy. Envoy picks a weighted cluster with probability weight / sum of weights
(https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-weightedcluster)
and mirrors a request with a `runtime_fraction` out of HUNDRED
(https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-routeaction-requestmirrorpolicy),
so whole percentages map onto both without rounding. `live` is a split the router applied itself (a canary
step or a rollback): it replaces the configured shares of the non-default versions it names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contract.endpoints import PERCENT
from contract.stack import ModelEntry


@dataclass(frozen=True)
class VersionTraffic:
    version: str
    weight: int  # percent of the client requests it answers
    mirror_percent: int  # percent of the endpoint's requests copied to it (a shadow: weight 0)


@dataclass(frozen=True)
class EndpointTraffic:
    endpoint: str
    default: str
    versions: tuple[VersionTraffic, ...]  # in `versions` order

    @property
    def weighted_clusters(self) -> tuple[tuple[str, int], ...]:
        """(version, weight) of every version that answers clients; the weights sum to 100."""
        return tuple((v.version, v.weight) for v in self.versions if v.weight > 0)

    @property
    def mirrors(self) -> tuple[tuple[str, int], ...]:
        """(version, percent of requests copied) of every shadow."""
        return tuple((v.version, v.mirror_percent) for v in self.versions if v.mirror_percent > 0)


def endpoint_traffic(entry: ModelEntry, live: Mapping[str, int] | None = None) -> EndpointTraffic | None:
    """The split of a valid endpoint entry (None for a plain service). ValueError when `live` names the default
    or an unknown version, or leaves the default less than nothing."""
    if not entry.versions:
        return None
    live = dict(live or {})
    names = {v.name for v in entry.versions}
    default = next(v for v in entry.versions if v.is_default)
    problems = [f"{name!r} is not a version of {entry.name!r}" for name in live if name not in names]
    if default.name in live:
        problems.append(f"{default.name!r} is the default: it takes the rest, never a share of its own")
    if any(not 0 <= share <= PERCENT for share in live.values()):
        problems.append(f"shares must be 0-{PERCENT}: {live}")
    shares = {v.name: live.get(v.name, v.traffic_percentile or 0) for v in entry.versions if not v.is_default}
    rest = PERCENT - sum(shares.values())
    if rest < 0:
        problems.append(f"the shares {shares} sum past {PERCENT}")
    if problems:
        raise ValueError("; ".join(problems))
    return EndpointTraffic(
        entry.name,
        default.name,
        tuple(VersionTraffic(v.name, rest if v.is_default else shares[v.name], v.mirror_percentile) for v in entry.versions),
    )
