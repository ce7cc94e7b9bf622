"""Topologies that route, as config: a next hop, DNS servers and a private registry must be reachable from the
nodes, and a hub is declared with its ranges. Every bad input is one keyed issue, all reported together."""

from __future__ import annotations

import pytest

from contract.errors import ConfigError
from contract.loading import validate_stack_config

HUB_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-hub/providers/Microsoft.Network/virtualNetworks/vnet-hub"
HUB = {"vnetId": HUB_ID, "addressSpace": ["10.100.0.0/16"]}
ZONE_ID = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-dns/providers/Microsoft.Network/privateDnsZones/{}"
BASE = {"purpose": "DevTest", "cluster": {"disableLocalAccounts": False}}


def issues(**sections) -> list[tuple[str, str]]:
    try:
        validate_stack_config({**BASE, **sections}, "westeurope")
    except ConfigError as error:
        return [(issue.key, issue.problem) for issue in error.issues]
    return []


def only(found: list[tuple[str, str]], key: str, text: str) -> None:
    assert [k for k, _ in found] == [key], found
    assert text in found[0][1], found


def test_next_hop_outside_every_declared_range_names_the_key_and_the_ranges():
    only(issues(egress={"mode": "external", "nextHopIp": "192.168.10.4"}), "egress.nextHopIp",
         "in no network the nodes can reach: allowed: an address in network.vnetCidr (10.224.0.0/12) or in network.hub.addressSpace (none declared)")
    only(issues(network={"hub": HUB}, egress={"mode": "external", "nextHopIp": "10.101.0.4"}), "egress.nextHopIp", "network.hub.addressSpace (10.100.0.0/16)")


@pytest.mark.parametrize("next_hop", ["10.100.0.4", "10.230.0.4"])
def test_next_hop_in_the_hub_or_the_vnet_is_accepted(next_hop):
    assert issues(network={"hub": HUB}, egress={"mode": "external", "nextHopIp": next_hop}) == []


def test_next_hop_in_the_node_subnet_would_route_to_itself():
    only(issues(egress={"mode": "external", "nextHopIp": "10.224.0.4"}), "egress.nextHopIp", "lies in network.nodeSubnetCidr")


def test_dns_server_in_no_subnet_names_the_key_and_what_is_reachable():
    found = issues(network={"dnsServers": ["168.63.129.16", "10.239.0.4"]})
    only(found, "network.dnsServers[1]", "reachable from no network: allowed: Azure DNS (168.63.129.16), an address in a subnet this stack creates (10.224.0.0/16)")


@pytest.mark.parametrize("server", ["168.63.129.16", "10.100.1.4", "10.224.0.53"])
def test_dns_server_in_azure_dns_the_hub_or_our_subnet_is_accepted(server):
    assert issues(network={"dnsServers": [server], "hub": HUB}) == []


def test_private_registry_without_a_subnet_range_names_the_new_key():
    only(issues(registry={"publicNetworkAccess": False}), "registry.privateEndpointSubnetCidr",
         "is required when registry.publicNetworkAccess is false")


@pytest.mark.parametrize(("cidr", "text"), [
    ("192.168.0.0/28", "inside network.vnetCidr"),
    ("10.224.1.0/28", "must not overlap network.nodeSubnetCidr"),
    ("10.225.0.0/30", "smallest subnet"),
])
def test_private_registry_subnet_must_be_a_free_range_of_the_vnet(cidr, text):
    only(issues(registry={"publicNetworkAccess": False, "privateEndpointSubnetCidr": cidr}), "registry.privateEndpointSubnetCidr", text)


def test_registry_subnet_without_private_registry_is_refused():
    only(issues(registry={"privateEndpointSubnetCidr": "10.225.0.0/28"}), "registry.privateEndpointSubnetCidr", "only used when")


def test_hub_ranges_must_not_overlap_ours():
    found = issues(network={"hub": {**HUB, "addressSpace": ["10.0.0.0/8"]}})
    assert {key for key, _ in found} == {"network.hub.addressSpace[0]"}
    assert sorted(problem.split(" (")[0] for _, problem in found) == [
        "overlaps network.podCidr", "overlaps network.serviceCidr", "overlaps network.vnetCidr"]


@pytest.mark.parametrize(("hub", "key", "text"), [
    ({**HUB, "vnetId": "vnet-hub"}, "network.hub.vnetId", "virtual network resource id"),
    ({"vnetId": HUB_ID}, "network.hub.addressSpace", "required"),
    ({**HUB, "addressSpace": []}, "network.hub.addressSpace", "at least 1"),
])
def test_hub_needs_a_vnet_id_and_its_ranges(hub, key, text):
    only(issues(network={"hub": hub}), key, text)


@pytest.mark.parametrize(("zone", "private", "text"), [
    ("none", False, "only used with cluster.privateCluster true"),
    ("privatelink.westeurope.azmk8s.io", True, "allowed: system, none, or a private DNS zone id"),
    (ZONE_ID.format("privatelink.northeurope.azmk8s.io"), True, "names region northeurope, but the cluster is in westeurope"),
    (ZONE_ID.format("example.com"), True, "allowed: system, none"),
])
def test_private_dns_zone_is_system_none_or_a_zone_of_the_region(zone, private, text):
    cluster = {**BASE["cluster"], "privateCluster": private, "privateDnsZone": zone}
    only(issues(cluster=cluster), "cluster.privateDnsZone", text)


@pytest.mark.parametrize("zone", ["system", "none", ZONE_ID.format("privatelink.westeurope.azmk8s.io"), ZONE_ID.format("team.privatelink.westeurope.azmk8s.io")])
def test_private_dns_zone_values_accepted(zone):
    assert issues(cluster={**BASE["cluster"], "privateCluster": True, "privateDnsZone": zone}) == []


def test_all_topology_problems_are_reported_together():
    found = issues(
        network={"dnsServers": ["10.239.0.4"]},
        egress={"mode": "external", "nextHopIp": "192.168.10.4"},
        registry={"publicNetworkAccess": False},
    )
    assert sorted(key for key, _ in found) == ["egress.nextHopIp", "network.dnsServers[0]", "registry.privateEndpointSubnetCidr"]


FIREWALL = {"mode": "firewall", "firewallSubnetCidr": "10.225.0.0/26"}


@pytest.mark.parametrize(("count", "text"), [(0, "greater than or equal to 1"), (250, "less than or equal to 249")])
def test_firewall_public_ips_outside_what_azure_firewall_takes_name_the_key(count, text):
    only(issues(egress={**FIREWALL, "firewallPublicIps": count}), "egress.firewallPublicIps", text)


def test_firewall_public_ips_without_our_firewall_name_the_key():
    only(issues(egress={"mode": "external", "nextHopIp": "10.230.0.4", "firewallPublicIps": 2}), "egress.firewallPublicIps",
         "is only used when egress.mode is firewall")


@pytest.mark.parametrize(("purpose", "public_ips", "expected"), [("DevTest", None, 1), ("FastProd", None, 20), ("DenseProd", None, 20), ("FastProd", 4, 4)])
def test_firewall_public_ip_count_defaults_by_purpose(purpose, public_ips, expected):
    egress = {**FIREWALL, **({"firewallPublicIps": public_ips} if public_ips else {})}
    cluster = {"systemPool": {"count": 3}, "adminGroupObjectIds": ["00000000-0000-0000-0000-000000000000"]}
    config = validate_stack_config({"purpose": purpose, "cluster": cluster, "egress": egress}, "westeurope")
    assert config.firewall_public_ip_count == expected
