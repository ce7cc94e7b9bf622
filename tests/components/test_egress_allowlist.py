"""The egress allowlist against Microsoft's outbound rules for AKS
(https://learn.microsoft.com/azure/aks/outbound-rules-control-egress), group by group."""

from __future__ import annotations

from components.egress import egress_allowlist
from contract.loading import validate_stack_config

ACR = "acraksinfdev.azurecr.io"
BASE = {"purpose": "DevTest", "cluster": {"disableLocalAccounts": False}}


def allowlist(**values) -> set[tuple[str, str, str, int]]:
    config = validate_stack_config({**BASE, **values}, "westeurope")
    return {(r.kind, r.destination, r.protocol, r.port) for r in egress_allowlist(config, ACR)}


def hosts(**values) -> set[str]:
    return {destination for _, destination, _, _ in allowlist(**values)}


def test_required_hosts_include_packages_aks_azure_com_and_drop_what_current_clusters_do_not_use():
    found = allowlist(monitoring={"containerInsights": False}, defender=False)
    assert ("fqdn", "packages.aks.azure.com", "Https", 443) in found
    assert ("fqdn", "acs-mirror.azureedge.net", "Https", 443) in found
    assert not any(port in (123, 1194, 9000) for *_, port in found)
    assert "ntp.ubuntu.com" not in {d for _, d, _, _ in found}


def test_managed_identity_monitoring_hosts_and_the_azure_monitor_service_tag():
    found = allowlist(monitoring={"containerInsights": True}, defender=False)
    for host in ("global.handler.control.monitor.azure.com", "westeurope.handler.control.monitor.azure.com",
                 "*.ingest.monitor.azure.com", "*.ods.opinsights.azure.com"):
        assert ("fqdn", host, "Https", 443) in found
    assert ("serviceTag", "AzureMonitor", "TCP", 443) in found
    assert "westeurope.ingest.monitor.azure.com" not in {d for _, d, _, _ in found}  # no such host


def test_defender_alone_still_reaches_its_workspace_hosts():
    defender_only = hosts(monitoring={"containerInsights": False}, defender=True)
    assert {"*.ods.opinsights.azure.com", "*.oms.opinsights.azure.com", "*.cloud.defender.microsoft.com"} <= defender_only
    assert "AzureMonitor" not in defender_only and "global.handler.control.monitor.azure.com" not in defender_only
    neither = hosts(monitoring={"containerInsights": False}, defender=False)
    assert not {"*.ods.opinsights.azure.com", "*.oms.opinsights.azure.com"} & neither


def test_azure_policy_addon_hosts_are_always_allowed():
    # The Azure Policy add-on is always on (components/cluster_profiles.addon_profiles).
    assert {"data.policy.core.windows.net", "store.policy.core.windows.net"} <= hosts(monitoring={"containerInsights": False}, defender=False)


def test_the_azure_only_fqdn_tag_is_used_only_by_our_azure_firewall():
    firewall = allowlist(egress={"mode": "firewall", "firewallSubnetCidr": "10.225.0.0/26"})
    assert ("fqdnTag", "AzureKubernetesService", "Https", 443) in firewall
    for egress in ({"mode": "external", "nextHopIp": "10.225.0.4"}, {"mode": "loadBalancer"}):
        assert not [r for r in allowlist(egress=egress) if r[0] == "fqdnTag"]


def test_no_storage_wildcard_with_a_premium_registry_and_the_model_data_account_by_name():
    premium = validate_stack_config({**BASE, "registry": {"sku": "Premium"}}, "westeurope")
    found = {r.destination for r in egress_allowlist(premium, ACR, "staksinfdevmd")}
    assert "*.blob.core.windows.net" not in found
    assert {"acraksinfdev.westeurope.data.azurecr.io", "staksinfdevmd.blob.core.windows.net"} <= found


def test_a_standard_registry_needs_the_storage_wildcard_and_says_why():
    standard = validate_stack_config({**BASE, "registry": {"sku": "Standard"}}, "westeurope")
    rules = {r.destination: r for r in egress_allowlist(standard, ACR)}
    assert "Premium removes this wildcard" in rules["*.blob.core.windows.net"].why
    assert "acraksinfdev.westeurope.data.azurecr.io" not in rules


PRIVATE_REGISTRY = {"sku": "Premium", "publicNetworkAccess": False, "privateEndpointSubnetCidr": "10.225.0.0/28"}
HUB_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-hub/providers/Microsoft.Network/virtualNetworks/vnet-hub"


def test_private_registry_is_reached_through_its_endpoint_so_no_public_registry_host_is_allowed():
    """External mode exports the list to a network team: a registry without public access has no public host to open."""
    external = {"network": {"hub": {"vnetId": HUB_ID, "addressSpace": ["10.100.0.0/16"]}}, "egress": {"mode": "external", "nextHopIp": "10.100.0.4"}}
    public = hosts(**external, registry={"sku": "Premium"})
    assert {ACR, "acraksinfdev.westeurope.data.azurecr.io"} <= public
    private = hosts(**external, registry=PRIVATE_REGISTRY)
    assert not {h for h in private if "azurecr.io" in h or h == "*.blob.core.windows.net"}
    assert public - private == {ACR, "acraksinfdev.westeurope.data.azurecr.io"}
