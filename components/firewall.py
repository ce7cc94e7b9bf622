"""Egress lockdown: Azure Firewall + policy enforcing the allowlist, and the default route to it.

In `external` mode a network team owns the firewall: only the default route to
`egress.nextHopIp` is created, and the allowlist is exported for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_azure_native.network as network

from components.egress import APPLICATION_KINDS, EgressRule
from contract.names import Names
from contract.stack import StackConfig

NETWORK_RULES_PRIORITY = 200
APPLICATION_RULES_PRIORITY = 300


@dataclass
class EgressArgs:
    config: StackConfig
    names: Names
    resource_group_name: pulumi.Input[str]
    allowlist: list[EgressRule]
    route_table_name: pulumi.Input[str]
    firewall_subnet_id: pulumi.Input[str] | None = None


def _rule_name(index: int, rule: EgressRule) -> str:
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", rule.destination.replace("*.", "any.")).strip("-")
    return f"{index:03d}-{slug}-{rule.protocol.lower()}{rule.port}"[:80]


def application_rules(allowlist: list[EgressRule], sources: list[str]) -> list[network.ApplicationRuleArgs]:
    rules = []
    for index, rule in enumerate(r for r in allowlist if r.kind in APPLICATION_KINDS):
        target = {"fqdn_tags": [rule.destination]} if rule.kind == "fqdnTag" else {"target_fqdns": [rule.destination]}
        rules.append(
            network.ApplicationRuleArgs(
                rule_type="ApplicationRule",
                name=_rule_name(index, rule),
                description=rule.why,
                source_addresses=sources,
                protocols=[network.FirewallPolicyRuleApplicationProtocolArgs(protocol_type=rule.protocol, port=rule.port)],
                **target,
            )
        )
    return rules


def network_rules(allowlist: list[EgressRule], sources: list[str]) -> list[network.NetworkRuleArgs]:
    rules = []
    for index, rule in enumerate(r for r in allowlist if r.kind not in APPLICATION_KINDS):
        target = (
            {"destination_fqdns": [rule.destination]}
            if rule.kind == "networkFqdn"
            else {"destination_addresses": [rule.destination]}
        )
        rules.append(
            network.NetworkRuleArgs(
                rule_type="NetworkRule",
                name=_rule_name(index, rule),
                description=rule.why,
                source_addresses=sources,
                ip_protocols=[rule.protocol],
                destination_ports=[str(rule.port)],
                **target,
            )
        )
    return rules


class Egress(pulumi.ComponentResource):
    def __init__(self, name: str, args: EgressArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:egress:Egress", name, None, opts)
        config, names = args.config, args.names
        child = pulumi.ResourceOptions(parent=self)
        tags = names.tags(config.purpose)
        self.firewall = None
        self.public_ip = None
        if config.egress.mode == "firewall":
            sources = [config.network.node_subnet_cidr]
            self.public_ip = network.PublicIPAddress(
                f"{name}-firewall-ip",
                public_ip_address_name=names.of("pip-fw"),
                resource_group_name=args.resource_group_name,
                location=config.location,
                sku={"name": "Standard", "tier": "Regional"},
                public_ip_allocation_method="Static",
                tags=tags,
                opts=child,
            )
            policy = network.FirewallPolicy(
                f"{name}-policy",
                firewall_policy_name=names.of("fwpol"),
                resource_group_name=args.resource_group_name,
                location=config.location,
                sku={"tier": "Standard"},
                threat_intel_mode=config.egress.threat_intel_mode,
                # FQDNs in network rules (ntp.ubuntu.com) need the firewall's DNS proxy.
                dns_settings={"enable_proxy": True, "servers": list(config.network.dns_servers) or None},
                tags=tags,
                opts=child,
            )
            network_group = self._allow_group(
                f"{name}-network-rules", "aks-network", NETWORK_RULES_PRIORITY, policy, args,
                network_rules(args.allowlist, sources), after=None,
            )
            # Groups on one policy are written one after the other: concurrent PUTs fail.
            application_group = self._allow_group(
                f"{name}-application-rules", "aks-application", APPLICATION_RULES_PRIORITY, policy, args,
                application_rules(args.allowlist, sources), after=network_group,
            )
            self.firewall = network.AzureFirewall(
                f"{name}-firewall",
                azure_firewall_name=names.of("fw"),
                resource_group_name=args.resource_group_name,
                location=config.location,
                sku={"name": "AZFW_VNet", "tier": "Standard"},
                firewall_policy={"id": policy.id},
                ip_configurations=[
                    {"name": "egress", "subnet": {"id": args.firewall_subnet_id}, "public_ip_address": {"id": self.public_ip.id}}
                ],
                tags=tags,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[application_group]),
            )
            next_hop = self.firewall.ip_configurations.apply(lambda cfgs: cfgs[0].private_ip_address)
            # Return traffic to the firewall's own public IP must not loop back through it.
            network.Route(
                f"{name}-firewall-return",
                route_name="firewall-public-ip",
                route_table_name=args.route_table_name,
                resource_group_name=args.resource_group_name,
                address_prefix=self.public_ip.ip_address.apply(lambda ip: f"{ip}/32"),
                next_hop_type="Internet",
                opts=child,
            )
        else:
            next_hop = pulumi.Output.from_input(config.egress.next_hop_ip)
        self.default_route = network.Route(
            f"{name}-default-route",
            route_name="default-egress",
            route_table_name=args.route_table_name,
            resource_group_name=args.resource_group_name,
            address_prefix="0.0.0.0/0",
            next_hop_type="VirtualAppliance",
            next_hop_ip_address=next_hop,
            opts=child,
        )
        self.register_outputs({"nextHopIp": next_hop})

    def _allow_group(self, resource_name, group, priority, policy, args, rules, after):
        return network.FirewallPolicyRuleCollectionGroup(
            resource_name,
            rule_collection_group_name=group,
            firewall_policy_name=policy.name,
            resource_group_name=args.resource_group_name,
            priority=priority,
            # Typed Args: plain dicts inside this polymorphic list would reach Azure in snake_case.
            rule_collections=[
                network.FirewallPolicyFilterRuleCollectionArgs(
                    rule_collection_type="FirewallPolicyFilterRuleCollection",
                    name=group,
                    priority=priority,
                    action=network.FirewallPolicyFilterRuleCollectionActionArgs(type="Allow"),
                    rules=rules,
                )
            ],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[after] if after else None),
        )
