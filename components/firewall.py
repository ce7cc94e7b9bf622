"""Egress lockdown: Azure Firewall (with `egress.firewallPublicIps` public IPs) + policy enforcing the allowlist,
and the default route to it; and the DNAT rule that publishes the router behind that firewall on its first public
IP (`RouterDnat`), which also carries `router.dnsLabel` then.

In `external` mode a network team owns the firewall: only the default route to
`egress.nextHopIp` is created, and the allowlist is exported for them (publishing the
router's internal load balancer is then theirs too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_azure_native.network as network

from components.egress import APPLICATION_KINDS, EgressRule
from contract.names import Names
from contract.stack import StackConfig

DNAT_RULES_PRIORITY = 100
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


def _ip_configurations(subnet_id: pulumi.Input[str], public_ip_ids: list[pulumi.Input[str]]) -> list[dict]:
    """One ip configuration per public IP; only the first names the AzureFirewallSubnet, the others carry their
    public IP alone, as Azure requires (https://learn.microsoft.com/azure/firewall/deploy-multi-public-ip-powershell)."""
    return [
        {"name": "egress", "subnet": {"id": subnet_id}, "public_ip_address": {"id": public_ip_ids[0]}},
        *({"name": f"egress-{n}", "public_ip_address": {"id": ip_id}} for n, ip_id in enumerate(public_ip_ids[1:], start=2)),
    ]


def _published_label(config: StackConfig) -> dict | None:
    """`router.dnsLabel` for a router published by DNAT: it names the firewall's first public IP, where clients
    connect (on the router's internal load balancer the label would name nothing)."""
    return {"domain_name_label": config.router.dns_label} if config.router_dnat and config.router.dns_label else None


class Egress(pulumi.ComponentResource):
    def __init__(self, name: str, args: EgressArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:egress:Egress", name, None, opts)
        config, names = args.config, args.names
        child = pulumi.ResourceOptions(parent=self)
        tags = names.tags(config.purpose)
        self.firewall = None
        self.public_ip = None
        self.public_ips: list[network.PublicIPAddress] = []
        self.public_ranges = None
        self.policy = None
        self.rule_groups: list[network.FirewallPolicyRuleCollectionGroup] = []
        if config.egress.mode == "firewall":
            sources = [config.network.node_subnet_cidr]
            # `egress.firewallPublicIps` Standard static IPs: more SNAT ports (https://learn.microsoft.com/azure/firewall/deploy-multi-public-ip-powershell).
            # The first keeps its original names, carries the DNAT rule and, for a router it publishes, `router.dnsLabel`.
            self.public_ips = [
                network.PublicIPAddress(
                    f"{name}-firewall-ip" + (f"-{n}" if n > 1 else ""),
                    public_ip_address_name=names.of("pip-fw" + (str(n) if n > 1 else "")),
                    resource_group_name=args.resource_group_name,
                    location=config.location,
                    sku={"name": "Standard", "tier": "Regional"},
                    public_ip_allocation_method="Static",
                    dns_settings=_published_label(config) if n == 1 else None,
                    tags=tags,
                    opts=child,
                )
                for n in range(1, config.firewall_public_ip_count + 1)
            ]
            self.public_ip = self.public_ips[0]
            # Where the firewall's traffic comes from, as /32s (the API server's authorized ranges include them).
            self.public_ranges = pulumi.Output.all(*(ip.ip_address for ip in self.public_ips)).apply(
                lambda ips: [f"{ip}/32" for ip in ips]
            )
            self.policy = policy = network.FirewallPolicy(
                f"{name}-policy",
                firewall_policy_name=names.of("fwpol"),
                resource_group_name=args.resource_group_name,
                location=config.location,
                sku={"tier": "Standard"},
                threat_intel_mode=config.egress.threat_intel_mode,
                # The DNS proxy resolves FQDNs in network rules (through the custom DNS servers when set).
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
            self.rule_groups = [network_group, application_group]
            self.firewall = network.AzureFirewall(
                f"{name}-firewall",
                azure_firewall_name=names.of("fw"),
                resource_group_name=args.resource_group_name,
                location=config.location,
                sku={"name": "AZFW_VNet", "tier": "Standard"},
                firewall_policy={"id": policy.id},
                ip_configurations=_ip_configurations(args.firewall_subnet_id, [ip.id for ip in self.public_ips]),
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


@dataclass
class RouterDnatArgs:
    resource_group_name: pulumi.Input[str]
    egress: Egress  # the stack's firewall (egress.mode firewall)
    router_ip: pulumi.Input[str]  # the router's internal load balancer IP
    port: int  # the router Service's port: 443 with TLS, 80 without


class RouterDnat(pulumi.ComponentResource):
    """Publishes the router's internal load balancer on the firewall's public IP. Behind a default route to the
    firewall, inbound traffic must enter through the firewall too, or replies leave by another path and are dropped
    (https://learn.microsoft.com/azure/firewall/integrate-lb, https://learn.microsoft.com/azure/aks/limit-egress-traffic)."""

    def __init__(self, name: str, args: RouterDnatArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:egress:RouterDnat", name, None, opts)
        egress = args.egress
        port = str(args.port)
        rule = network.NatRuleArgs(
            rule_type="NatRule",
            name=f"router-{port}",
            description="the router's internal load balancer, published on the firewall's public IP",
            source_addresses=["*"],
            destination_addresses=[egress.public_ip.ip_address],
            destination_ports=[port],
            ip_protocols=["TCP"],
            translated_address=args.router_ip,
            translated_port=port,
        )
        self.rule_group = network.FirewallPolicyRuleCollectionGroup(
            f"{name}-dnat-rules",
            rule_collection_group_name="aks-dnat",
            firewall_policy_name=egress.policy.name,
            resource_group_name=args.resource_group_name,
            priority=DNAT_RULES_PRIORITY,
            rule_collections=[
                network.FirewallPolicyNatRuleCollectionArgs(
                    rule_collection_type="FirewallPolicyNatRuleCollection",
                    name="aks-dnat",
                    priority=DNAT_RULES_PRIORITY,
                    action=network.FirewallPolicyNatRuleCollectionActionArgs(type="DNAT"),
                    rules=[rule],
                )
            ],
            # Groups on one policy are written one after the other: concurrent PUTs fail.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*egress.rule_groups, egress.firewall]),
        )
        self.register_outputs({"publishedIp": egress.public_ip.ip_address})
