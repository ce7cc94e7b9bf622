"""Built-in Azure role definitions the platform assigns, deterministic assignment names, and which extra
rights the cluster's control-plane identity needs for private DNS."""

from __future__ import annotations

import uuid

import pulumi
import pulumi_azure_native.authorization as authorization

from contract.stack import StackConfig

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
PRIVATE_DNS_ZONE_CONTRIBUTOR = "b12aa53e-6015-4669-85d0-8515ebb3ae7f"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"

_NAMESPACE = uuid.UUID("3b2f7c1e-9a56-4c1e-8f0a-61d0a1c2b7e4")


def role_definition_id(role: str) -> pulumi.Output[str]:
    subscription = authorization.get_client_config_output().subscription_id
    return subscription.apply(lambda sub: f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}")


def assignment_name(*parts: str) -> str:
    """Role assignment names must be GUIDs; derive them so re-runs never create duplicates."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def private_dns_grants(config: StackConfig, vnet_id: object) -> dict[str, tuple[str, object]]:
    """{label: (role, scope)} the control-plane identity needs beyond the node subnet for a private cluster
    (https://learn.microsoft.com/azure/aks/private-clusters): with custom DNS servers or a zone of yours, AKS links
    the private zone to the VNet itself (Network Contributor on the VNet); a zone of yours also needs Private DNS
    Zone Contributor on that zone."""
    cluster = config.cluster
    if not cluster.private_cluster:
        return {}
    grants: dict[str, tuple[str, object]] = {}
    own_zone = cluster.private_dns_zone not in ("system", "none")
    if config.network.dns_servers or own_zone:
        grants["vnet"] = (NETWORK_CONTRIBUTOR, vnet_id)
    if own_zone:
        grants["private-dns-zone"] = (PRIVATE_DNS_ZONE_CONTRIBUTOR, cluster.private_dns_zone)
    return grants
