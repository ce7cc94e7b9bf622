"""Topologies that route, on the real program under mocks: hub peerings, the registry's private path, the route
table on the node subnet, private-DNS grants, and a router behind the firewall published by DNAT."""

from __future__ import annotations

import pytest

from tests.pulumi_harness import run_program, stack_config, with_config

PEERING = "azure-native:network:VirtualNetworkPeering"
SUBNET = "azure-native:network:Subnet"
ROLE = "azure-native:authorization:RoleAssignment"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
PRIVATE_DNS_ZONE_CONTRIBUTOR = "b12aa53e-6015-4669-85d0-8515ebb3ae7f"
DIABETES = {"name": "diabetes", "path": "examples/models/diabetes"}


@pytest.fixture(scope="module")
def hub_run():
    run = run_program("hub")
    assert run.error is None, run.error
    return run


def test_hub_peerings_both_ways_with_forwarded_traffic(hub_run):
    hub = stack_config("hub")["aks-inference:network"]["hub"]
    vnet = hub_run.one("azure-native:network:VirtualNetwork")
    peerings = {p.name: p for p in hub_run.of_type(PEERING)}
    spoke, back = peerings["aks-inference-network-spoke-to-hub"], peerings["aks-inference-network-hub-to-spoke"]
    assert spoke.inputs["remoteVirtualNetwork"] == {"id": hub["vnetId"]}
    assert spoke.inputs["virtualNetworkName"] == vnet.inputs["virtualNetworkName"]
    # The hub's side lives in the hub's group and subscription, written by a provider for that subscription.
    assert back.inputs["remoteVirtualNetwork"] == {"id": vnet.outputs["id"]}
    assert (back.inputs["resourceGroupName"], back.inputs["virtualNetworkName"]) == ("rg-hub", "vnet-hub")
    provider = next(r for r in hub_run.resources if r.type == "pulumi:providers:azure-native")
    assert provider.inputs["subscriptionId"] == "00000000-0000-0000-0000-000000000000" and back.provider.startswith(provider.urn)
    for peering in (spoke, back):
        assert peering.inputs["allowVirtualNetworkAccess"] is True and peering.inputs["allowForwardedTraffic"] is True
        assert peering.inputs["allowGatewayTransit"] is False and peering.inputs["useRemoteGateways"] is False
    # The nodes' egress path exists before the cluster is created.
    cluster = hub_run.one("azure-native:containerservice:ManagedCluster")
    assert {spoke.urn, back.urn} <= set(cluster.dependencies)


def test_gateway_transit_is_offered_by_the_hub_and_used_by_the_spoke():
    config = stack_config("hub")
    config["aks-inference:network"]["hub"]["useRemoteGateways"] = True
    run = run_program("hub", config)
    assert run.error is None, run.error
    peerings = {p.name: p for p in run.of_type(PEERING)}
    spoke, back = peerings["aks-inference-network-spoke-to-hub"], peerings["aks-inference-network-hub-to-spoke"]
    assert (spoke.inputs["useRemoteGateways"], spoke.inputs["allowGatewayTransit"]) == (True, False)
    assert (back.inputs["allowGatewayTransit"], back.inputs["useRemoteGateways"]) == (True, False)
    assert back.urn in spoke.dependencies  # the hub must allow transit before the spoke uses it


def test_external_egress_routes_to_the_hub_firewall_and_exports_concrete_hosts(hub_run):
    route = hub_run.one("azure-native:network:Route")
    assert (route.inputs["addressPrefix"], route.inputs["nextHopType"], route.inputs["nextHopIpAddress"]) == ("0.0.0.0/0", "VirtualAppliance", "10.100.0.4")
    allowlist = hub_run.outputs["egressAllowlist"]
    assert "AzureKubernetesService" not in {rule["destination"] for rule in allowlist}
    assert {"mcr.microsoft.com", "packages.aks.azure.com", "management.azure.com"} <= {rule["destination"] for rule in allowlist}
    network_rules = {(r["destination"], r["protocol"], r["port"]) for r in allowlist if r["kind"] not in ("fqdn", "fqdnTag")}
    assert {("10.100.1.4", "UDP", 53), ("10.100.1.4", "TCP", 53), ("AzureMonitor", "TCP", 443)} <= network_rules
    assert not hub_run.of_type("azure-native:network:AzureFirewall")


def test_private_registry_endpoint_zone_and_links(hub_run):
    registry = hub_run.one("azure-native:containerregistry:Registry")
    assert registry.inputs["publicNetworkAccess"] == "Disabled"
    subnet = hub_run.one(SUBNET, "aks-inference-network-registry-subnet")
    assert subnet.inputs["addressPrefix"] == "10.225.0.0/28"
    endpoint = hub_run.one("azure-native:network:PrivateEndpoint")
    assert endpoint.inputs["subnet"] == {"id": subnet.outputs["id"]}
    [connection] = endpoint.inputs["privateLinkServiceConnections"]
    assert connection["groupIds"] == ["registry"] and connection["privateLinkServiceId"] == registry.outputs["id"]
    zone = hub_run.one("azure-native:privatedns:PrivateZone")
    assert (zone.inputs["privateZoneName"], zone.inputs["location"]) == ("privatelink.azurecr.io", "global")
    group = hub_run.one("azure-native:network:PrivateDnsZoneGroup")
    assert group.inputs["privateEndpointName"] == endpoint.outputs["name"]
    assert [c["privateDnsZoneId"] for c in group.inputs["privateDnsZoneConfigs"]] == [zone.outputs["id"]]
    links = {link.inputs["virtualNetwork"]["id"]: link for link in hub_run.of_type("azure-native:privatedns:VirtualNetworkLink")}
    vnet = hub_run.one("azure-native:network:VirtualNetwork")
    assert set(links) == {vnet.outputs["id"], stack_config("hub")["aks-inference:network"]["hub"]["vnetId"]}
    assert all(link.inputs["privateZoneName"] == "privatelink.azurecr.io" and link.inputs["registrationEnabled"] is False for link in links.values())


def test_private_cluster_with_custom_dns_gets_network_contributor_on_the_vnet(hub_run):
    vnet = hub_run.one("azure-native:network:VirtualNetwork")
    grants = {r.inputs["scope"]: r.inputs["roleDefinitionId"].rsplit("/", 1)[-1] for r in hub_run.of_type(ROLE) if "control-plane" in r.name}
    assert grants[vnet.outputs["id"]] == NETWORK_CONTRIBUTOR
    cluster = hub_run.one("azure-native:containerservice:ManagedCluster")
    assert cluster.inputs["apiServerAccessProfile"]["enablePrivateCluster"] is True
    assert cluster.inputs["apiServerAccessProfile"]["privateDNSZone"] == "system"


def test_own_private_dns_zone_is_passed_and_granted():
    zone = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-dns/providers/Microsoft.Network/privateDnsZones/privatelink.westeurope.azmk8s.io"
    config = stack_config("hub")
    config["aks-inference:cluster"]["privateDnsZone"] = zone
    run = run_program("hub", config)
    assert run.error is None, run.error
    assert run.one("azure-native:containerservice:ManagedCluster").inputs["apiServerAccessProfile"]["privateDNSZone"] == zone
    grants = {r.inputs["scope"]: r.inputs["roleDefinitionId"].rsplit("/", 1)[-1] for r in run.of_type(ROLE)}
    assert grants[zone] == PRIVATE_DNS_ZONE_CONTRIBUTOR


def test_public_cluster_without_custom_dns_gets_no_vnet_grant(prod_run):
    vnet = prod_run.one("azure-native:network:VirtualNetwork")
    assert vnet.outputs["id"] not in {r.inputs["scope"] for r in prod_run.of_type(ROLE)}


def test_kubenet_node_subnet_declares_the_route_table_the_program_owns(dev_run):
    """Without a table of ours AKS attaches its own, and the next update of the Subnet resource detaches it."""
    table = dev_run.one("azure-native:network:RouteTable")
    subnet = dev_run.one(SUBNET, "aks-inference-network-node-subnet")
    assert subnet.inputs["routeTable"] == {"id": table.outputs["id"]}
    assert table.inputs["disableBgpRoutePropagation"] is False  # no default route of ours to protect
    assert not dev_run.of_type("azure-native:network:Route")  # AKS writes the pod routes
    scopes = {r.inputs["scope"] for r in dev_run.of_type(ROLE) if "control-plane" in r.name}
    assert table.outputs["id"] in scopes


@pytest.fixture(scope="module")
def prod_models_run():
    run = run_program("prod", with_config("prod", models=[DIABETES], tls={"allowInsecure": True}))
    assert run.error is None, run.error
    return run


def _router(run):
    service = next(r for r in run.of_type("kubernetes:core/v1:Service") if r.inputs["metadata"]["name"] == "aks-inference-router")
    deployment = next(r for r in run.of_type("kubernetes:apps/v1:Deployment") if r.inputs["metadata"]["name"] == "aks-inference-router")
    return service, deployment


def test_router_behind_the_firewall_is_internal_and_published_by_dnat(prod_models_run):
    run = prod_models_run
    service, deployment = _router(run)
    assert service.inputs["metadata"]["annotations"]["service.beta.kubernetes.io/azure-load-balancer-internal"] == "true"
    router_ip = service.outputs["status"]["loadBalancer"]["ingress"][0]["ip"]
    firewall_ip = run.one("azure-native:network:PublicIPAddress", "aks-inference-egress-firewall-ip").outputs["ipAddress"]  # the first: it carries the DNAT rule
    groups = {g.inputs["ruleCollectionGroupName"]: g for g in run.of_type("azure-native:network:FirewallPolicyRuleCollectionGroup")}
    [collection] = groups["aks-dnat"].inputs["ruleCollections"]
    assert (collection["ruleCollectionType"], collection["action"]) == ("FirewallPolicyNatRuleCollection", {"type": "DNAT"})
    [rule] = collection["rules"]
    assert rule["ruleType"] == "NatRule" and rule["destinationAddresses"] == [firewall_ip] and rule["destinationPorts"] == ["80"]
    assert (rule["translatedAddress"], rule["translatedPort"], rule["ipProtocols"]) == (router_ip, "80", ["TCP"])
    assert groups["aks-dnat"].inputs["firewallPolicyName"] == run.one("azure-native:network:FirewallPolicy").outputs["name"]
    assert run.outputs["scoringBaseUrl"] == f"http://{firewall_ip}"
    # The control plane reaches the API server by FQDN, which the allowlist's application rule admits.
    assert deployment.inputs["spec"]["template"]["metadata"]["annotations"] == {"kubernetes.azure.com/set-kube-service-host-fqdn": "true"}
    assert "*.hcp.westeurope.azmk8s.io" in {rule["destination"] for rule in run.outputs["egressAllowlist"]}


def test_router_with_load_balancer_egress_stays_public_without_dnat():
    run = run_program("dev", with_config("dev", router={"loadBalancer": "public"}))
    assert run.error is None, run.error
    service, deployment = _router(run)
    assert "service.beta.kubernetes.io/azure-load-balancer-internal" not in (service.inputs["metadata"].get("annotations") or {})
    assert "annotations" not in deployment.inputs["spec"]["template"]["metadata"]
    assert not run.of_type("azure-native:network:FirewallPolicyRuleCollectionGroup")


@pytest.mark.parametrize(("changes", "key"), [
    ({"egress": {"mode": "external", "nextHopIp": "192.168.10.4"}}, "egress.nextHopIp"),
    ({"network": {"dnsServers": ["10.239.0.4"]}}, "network.dnsServers[0]"),
    ({"registry": {"publicNetworkAccess": False}}, "registry.privateEndpointSubnetCidr"),
])
def test_unroutable_config_fails_before_any_resource(changes, key):
    run = run_program("dev", with_config("dev", **changes))
    assert key in str(run.error) and run.resources == []
