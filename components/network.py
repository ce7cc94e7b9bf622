"""VNet, subnets and the (empty) route table that egress lockdown fills."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native.network as network

from contract.names import Names
from contract.stack import StackConfig

FIREWALL_SUBNET = "AzureFirewallSubnet"  # Azure requires this exact name


@dataclass
class NetworkArgs:
    config: StackConfig
    names: Names
    resource_group_name: pulumi.Input[str]


class Network(pulumi.ComponentResource):
    """Standalone subnets only (mixing inline and standalone subnets churns on every VNet update)."""

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
        if config.egress.mode in ("firewall", "external"):
            # Routes are separate `Route` resources (components/firewall.py) so the table exists
            # before the firewall whose private IP they point to.
            self.route_table = network.RouteTable(
                f"{name}-egress-routes",
                route_table_name=names.of("rt"),
                resource_group_name=args.resource_group_name,
                location=config.location,
                disable_bgp_route_propagation=True,
                tags=tags,
                opts=child,
            )
        self.firewall_subnet = None
        if config.egress.mode == "firewall":
            self.firewall_subnet = network.Subnet(
                f"{name}-firewall-subnet",
                subnet_name=FIREWALL_SUBNET,
                virtual_network_name=self.vnet.name,
                resource_group_name=args.resource_group_name,
                address_prefix=config.egress.firewall_subnet_cidr,
                opts=child,
            )
        self.node_subnet = network.Subnet(
            f"{name}-node-subnet",
            subnet_name="nodes",
            virtual_network_name=self.vnet.name,
            resource_group_name=args.resource_group_name,
            address_prefix=config.network.node_subnet_cidr,
            route_table={"id": self.route_table.id} if self.route_table else None,
            # Subnets are written one at a time: concurrent PUTs on one VNet conflict.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[s for s in [self.firewall_subnet] if s]),
        )
        self.register_outputs({"vnetId": self.vnet.id, "nodeSubnetId": self.node_subnet.id})
