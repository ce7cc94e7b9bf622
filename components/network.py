"""The stack's network: VNet, subnets, the route table the program owns, peering with a hub, and the private
path to the registry.

Promises:
- Subnets are standalone resources, written one at a time (mixing inline and standalone subnets churns on every
  VNet update; concurrent subnet PUTs on one VNet conflict).
- The node subnet declares its route table whenever it has one, so a later subnet update never detaches it:
  with routed egress (firewall/external) the table carries the default route; with kubenet it always exists,
  because AKS would otherwise create its own in the node resource group and associate it with our subnet
  behind our back ("bring your own route table", https://learn.microsoft.com/azure/aks/configure-kubenet).
- `network.hub`: both peerings, each with forwarded traffic allowed (the hub's firewall forwards the nodes'
  traffic) and gateway transit on the hub side / remote gateways on ours when asked
  (https://learn.microsoft.com/azure/virtual-network/virtual-network-manage-peering).
- `registry.publicNetworkAccess: false`: a dedicated subnet, the `privatelink.azurecr.io` zone linked to this
  VNet (and to the hub), and, once the registry exists (`RegistryEndpoint`), its private endpoint (group
  `registry`) with a zone group that writes the login server's and the regional data endpoint's records
  (https://learn.microsoft.com/azure/container-registry/container-registry-private-link).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure_native
import pulumi_azure_native.network as network
import pulumi_azure_native.privatedns as privatedns

from contract.names import Names
from contract.stack import StackConfig

FIREWALL_SUBNET = "AzureFirewallSubnet"  # Azure requires this exact name
REGISTRY_ENDPOINT_SUBNET = "registry-endpoints"
REGISTRY_ZONE = "privatelink.azurecr.io"
REGISTRY_GROUP_ID = "registry"


def owns_route_table(config: StackConfig) -> bool:
    """Routed egress needs the default route; kubenet needs a table of ours for AKS's pod routes."""
    return config.routes_egress or config.network.plugin == "kubenet"


@dataclass
class NetworkArgs:
    config: StackConfig
    names: Names
    resource_group_name: pulumi.Input[str]


class Network(pulumi.ComponentResource):
    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:network:Network", name, None, opts)
        config, names = args.config, args.names
        child = pulumi.ResourceOptions(parent=self)
        tags = names.tags(config.purpose)
        self.vnet = network.VirtualNetwork(
            f"{name}-vnet",
            virtual_network_name=names.of("vnet"),
            resource_group_name=args.resource_group_name,
            location=config.location,
            address_space={"address_prefixes": [config.network.vnet_cidr]},
            dhcp_options={"dns_servers": list(config.network.dns_servers)} if config.network.dns_servers else None,
            tags=tags,
            opts=child,
        )
        self.route_table = None
        if owns_route_table(config):
            # Routes are separate `Route` resources (components/firewall.py) so the table exists before the
            # firewall whose private IP they point to, and AKS's kubenet pod routes are not ours to list.
            self.route_table = network.RouteTable(
                f"{name}-egress-routes",
                route_table_name=names.of("rt"),
                resource_group_name=args.resource_group_name,
                location=config.location,
                # The default route must win over routes a hub gateway would propagate.
                disable_bgp_route_propagation=config.routes_egress,
                tags=tags,
                opts=child,
            )
        subnets: list[network.Subnet] = []

        def subnet(resource: str, **kwargs) -> network.Subnet:
            created = network.Subnet(
                f"{name}-{resource}",
                virtual_network_name=self.vnet.name,
                resource_group_name=args.resource_group_name,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(subnets)),
                **kwargs,
            )
            subnets.append(created)
            return created

        self.firewall_subnet = None
        if config.egress.mode == "firewall":
            self.firewall_subnet = subnet("firewall-subnet", subnet_name=FIREWALL_SUBNET, address_prefix=config.egress.firewall_subnet_cidr)
        self.node_subnet = subnet(
            "node-subnet",
            subnet_name="nodes",
            address_prefix=config.network.node_subnet_cidr,
            route_table={"id": self.route_table.id} if self.route_table else None,
        )
        self.registry_subnet = self.registry_zone = None
        if not config.registry.public_network_access:
            self.registry_subnet = subnet(
                "registry-subnet",
                subnet_name=REGISTRY_ENDPOINT_SUBNET,
                address_prefix=config.registry.private_endpoint_subnet_cidr,
                private_endpoint_network_policies="Disabled",
            )
            self.registry_zone = privatedns.PrivateZone(
                f"{name}-registry-zone",
                private_zone_name=REGISTRY_ZONE,
                resource_group_name=args.resource_group_name,
                location="global",
                tags=tags,
                opts=child,
            )
            linked = {"vnet": self.vnet.id}
            if config.network.hub:
                # One zone per name across hub and spokes: a hub VNet already linked to another
                # privatelink.azurecr.io zone refuses this link (README: "Hub and spoke").
                linked["hub"] = config.network.hub.vnet_id
            for label, vnet_id in linked.items():
                privatedns.VirtualNetworkLink(
                    f"{name}-registry-zone-{label}",
                    virtual_network_link_name=f"{names.of('vnet')}-{label}",
                    private_zone_name=self.registry_zone.name,
                    resource_group_name=args.resource_group_name,
                    location="global",
                    virtual_network={"id": vnet_id},
                    registration_enabled=False,
                    tags=tags,
                    opts=child,
                )
        self.peerings: list[network.VirtualNetworkPeering] = []
        if config.network.hub:
            self.peerings = self._peer_with_hub(name, config, names, args.resource_group_name)
        self.register_outputs({"vnetId": self.vnet.id, "nodeSubnetId": self.node_subnet.id})

    def _peer_with_hub(self, name: str, config: StackConfig, names: Names, resource_group_name) -> list[network.VirtualNetworkPeering]:
        """Hub side first: with gateway transit, our side's useRemoteGateways needs the hub's allowGatewayTransit."""
        hub = config.network.hub
        parts = hub.parts
        # The hub may live in another subscription: its side is written there, by an explicit provider.
        hub_provider = azure_native.Provider(f"{name}-hub-provider", subscription_id=parts["subscription"], opts=pulumi.ResourceOptions(parent=self))
        hub_side = network.VirtualNetworkPeering(
            f"{name}-hub-to-spoke",
            virtual_network_peering_name=names.of("vnet"),
            virtual_network_name=parts["name"],
            resource_group_name=parts["group"],
            remote_virtual_network={"id": self.vnet.id},
            allow_virtual_network_access=True,
            allow_forwarded_traffic=True,
            allow_gateway_transit=hub.use_remote_gateways,
            use_remote_gateways=False,
            opts=pulumi.ResourceOptions(parent=self, provider=hub_provider),
        )
        spoke_side = network.VirtualNetworkPeering(
            f"{name}-spoke-to-hub",
            virtual_network_peering_name=f"to-{parts['name']}",
            virtual_network_name=self.vnet.name,
            resource_group_name=resource_group_name,
            remote_virtual_network={"id": hub.vnet_id},
            allow_virtual_network_access=True,
            allow_forwarded_traffic=True,
            allow_gateway_transit=False,
            use_remote_gateways=hub.use_remote_gateways,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[hub_side]),
        )
        return [hub_side, spoke_side]


@dataclass
class RegistryEndpointArgs:
    config: StackConfig
    names: Names
    resource_group_name: pulumi.Input[str]
    registry_id: pulumi.Input[str]
    network: Network


class RegistryEndpoint(pulumi.ComponentResource):
    """The registry's private endpoint in its subnet, and the zone group that keeps its DNS records."""

    def __init__(self, name: str, args: RegistryEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:network:RegistryEndpoint", name, None, opts)
        names, net = args.names, args.network
        self.endpoint = network.PrivateEndpoint(
            f"{name}-endpoint",
            private_endpoint_name=names.of("pe-acr"),
            resource_group_name=args.resource_group_name,
            location=args.config.location,
            subnet={"id": net.registry_subnet.id},
            private_link_service_connections=[
                {"name": names.of("pe-acr"), "private_link_service_id": args.registry_id, "group_ids": [REGISTRY_GROUP_ID]}
            ],
            tags=names.tags(args.config.purpose),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # The group writes an A record per endpoint member: <registry> and <registry>.<region>.data.
        self.zone_group = network.PrivateDnsZoneGroup(
            f"{name}-zone-group",
            private_dns_zone_group_name="default",
            private_endpoint_name=self.endpoint.name,
            resource_group_name=args.resource_group_name,
            private_dns_zone_configs=[{"name": REGISTRY_ZONE.replace(".", "-"), "private_dns_zone_id": net.registry_zone.id}],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"privateEndpointId": self.endpoint.id})
