"""Inputs Azure cannot change in place, in one table for the three places that need it: the cluster sets every
applicable force-new network field explicitly (`components.cluster_profiles`), the offline plan marks such
changes (`review.plan`), and a mandatory policy blocks the rebuilding ones on protected clusters
(`policies.rules`, protected-cluster-force-new-change).

Two kinds of entries:
- azure-native replaces the resource (force-new: pulumi-azure-native provider/pkg/gen/replacement.go,
  azure-aks-network-gpu.md §1.2);
- Pulumi would update in place and AKS rejects the update (a node pool's VM size, max pods, OS SKU, subnet
  and zones are fixed at creation: https://learn.microsoft.com/azure/aks/manage-node-pools and
  https://learn.microsoft.com/azure/aks/resize-node-pool).
An entry with a recipe is a rebuild the plan marks `!!` and the policy blocks; one without (a user pool's VM size)
is a replacement of that pool alone, which Pulumi carries out (`+-`).

Paths are input paths as the plan writes them: dotted keys, and `[name]` for the list item with that `name`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CLUSTER = "azure-native:containerservice:ManagedCluster"
AGENT_POOL = "azure-native:containerservice:AgentPool"

FORCE_NEW_NETWORK_FIELDS = (
    "serviceCidr", "serviceCidrs", "dnsServiceIP", "networkMode", "networkPlugin",
    "networkPluginMode", "podCidr", "networkDataplane", "networkPolicy", "outboundType",
)

NEW_CLUSTER = (
    "build a new stack with the new value next to this one (its own VNet range), deploy the models there, move "
    "clients to its scoring endpoint, then destroy this stack"
)
NEW_SYSTEM_POOL = (
    "add a temporary System pool with the new value (az aks nodepool add --mode System -n systemtmp ...), cordon and "
    "drain the nodes of pool `system` (kubectl cordon/drain -l kubernetes.azure.com/agentpool=system), delete it "
    "(az aks nodepool delete -n system), add `system` again with the new value, drain and delete systemtmp, then "
    "`pulumi refresh` and `pulumi up`"
)
NEW_USER_POOL = (
    "add a pools entry with a new name and the new value, `pulumi up`, cordon and drain the old pool's nodes "
    "(kubectl cordon/drain -l kubernetes.azure.com/agentpool=<old>), then remove the old entry and `pulumi up`"
)
# network.maxPods (and the subnet) apply to every pool at once: each pool is rebuilt in turn.
EVERY_POOL = f"for each user pool: {NEW_USER_POOL}; for the system pool: {NEW_SYSTEM_POOL}"


@dataclass(frozen=True)
class Immutable:
    path: str
    replaces: bool  # True: azure-native replaces the resource; False: Pulumi updates and AKS rejects it
    recipe: str | None  # the migration; None: replacing this resource alone is fine (`+-`)

    @property
    def mark(self) -> str:
        return "!!" if self.recipe else "+-"


_POOL_FIXED = ("maxPods", "osSku", "vnetSubnetID", "availabilityZones")

IMMUTABLE: dict[str, tuple[Immutable, ...]] = {
    CLUSTER: (
        *(Immutable(field, True, NEW_CLUSTER) for field in ("dnsPrefix", "location", "nodeResourceGroup", "linuxProfile", "windowsProfile")),
        *(Immutable(f"networkProfile.{field}", True, NEW_CLUSTER) for field in FORCE_NEW_NETWORK_FIELDS),
        Immutable("agentPoolProfiles[system].vmSize", False, NEW_SYSTEM_POOL),
        *(Immutable(f"agentPoolProfiles[system].{field}", False, EVERY_POOL if field in ("maxPods", "vnetSubnetID") else NEW_SYSTEM_POOL)
          for field in _POOL_FIXED),
    ),
    AGENT_POOL: (
        Immutable("vmSize", True, None),
        Immutable("gpuInstanceProfile", True, NEW_USER_POOL),
        *(Immutable(field, False, EVERY_POOL if field in ("maxPods", "vnetSubnetID") else NEW_USER_POOL) for field in _POOL_FIXED),
    ),
}


def matching(resource_type: str, changed: list[str]) -> list[Immutable]:
    """The table entries a change of these input paths touches (a changed parent touches every entry below it)."""
    hits = []
    for entry in IMMUTABLE.get(resource_type, ()):
        if any(key == entry.path or key.startswith(entry.path + ".") or entry.path.startswith(key + ".") or entry.path.startswith(key + "[")
               for key in changed):
            hits.append(entry)
    return hits


def value_at(inputs: Any, path: str) -> Any:
    """The value at a table path (`[name]` picks the list item with that name); None where there is none."""
    value = inputs
    for part in path.replace("[", ".[").split("."):
        if part.startswith("["):
            wanted = part[1:-1]
            value = next((item for item in value or [] if isinstance(item, Mapping) and item.get("name") == wanted), None)
        else:
            value = value.get(part) if isinstance(value, Mapping) else None
    return value
