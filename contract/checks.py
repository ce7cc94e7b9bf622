"""Checks that span sections: each runs only when every section it names parsed, so one bad
section never hides the problems of another. `services` is not a key but what the loader made
of `models`: the service folders, loaded once (`contract.service`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from datetime import date

from contract import vmsizes
from contract.kubernetes_versions import LONG_TERM_SUPPORT, LTS_TIER, version_problem
from contract.errors import REDACTED, ConfigIssue
from contract.service import ServiceFolder
from contract.stack import (
    AZURE_DNS,
    NAMESPACE,
    PRODUCTION_PURPOSES,
    AuthConfig,
    ClusterConfig,
    EgressConfig,
    ModelEntry,
    NetworkConfig,
    PoolConfig,
    RegistryConfig,
    TlsConfig,
    private_dns_zone_region,
)
from contract.v1_files import DeploymentConfig

# What the loader made of `models`: one entry per model, None where the path is no folder.
ServiceFolders = tuple[ServiceFolder | None, ...]
# Not a key either: the day the loader evaluates the stack for (date-bound rules take it as an argument).
EVALUATED_ON = "evaluatedOn"


CrossCheck = Callable[..., Iterable[ConfigIssue]]
CROSS_CHECKS: list[tuple[tuple[str, ...], CrossCheck]] = []


def cross_check(*sections: str) -> Callable[[CrossCheck], CrossCheck]:
    """Register a check that needs these sections; it runs only when all of them parsed."""

    def register(fn: CrossCheck) -> CrossCheck:
        CROSS_CHECKS.append((sections, fn))
        return fn

    return register


def _net(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


# Azure's smallest subnet (https://learn.microsoft.com/azure/virtual-network/virtual-networks-faq#how-small-and-how-large-can-virtual-networks-and-subnets-be).
SMALLEST_SUBNET_PREFIX = 29
# Ranges AKS refuses for the service CIDR.
AKS_FORBIDDEN_SERVICE_RANGES = ("169.254.0.0/16", "172.30.0.0/16", "172.31.0.0/16", "192.0.2.0/24")
AZURE_RESERVED_SUBNET_IPS = 5


@cross_check("network")
def _network_ranges(network: NetworkConfig) -> Iterable[ConfigIssue]:
    vnet, nodes, services = _net(network.vnet_cidr), _net(network.node_subnet_cidr), _net(network.service_cidr)
    if not nodes.subnet_of(vnet):
        yield ConfigIssue("network.nodeSubnetCidr", network.node_subnet_cidr, f"must lie inside network.vnetCidr ({vnet})")
    for key, cidr in (("network.vnetCidr", vnet), ("network.nodeSubnetCidr", nodes)):
        if cidr.prefixlen > SMALLEST_SUBNET_PREFIX:
            yield ConfigIssue(key, str(cidr), f"is smaller than Azure's smallest subnet; allowed: a /{SMALLEST_SUBNET_PREFIX} or larger")
    if services.overlaps(vnet):
        yield ConfigIssue("network.serviceCidr", network.service_cidr, f"must not overlap network.vnetCidr ({vnet})")
    for forbidden in AKS_FORBIDDEN_SERVICE_RANGES:
        if services.overlaps(_net(forbidden)):
            yield ConfigIssue(
                "network.serviceCidr",
                network.service_cidr,
                f"overlaps {forbidden}, which AKS reserves; allowed: a private range outside "
                + ", ".join(AKS_FORBIDDEN_SERVICE_RANGES),
            )
    if services.prefixlen <= 12:
        yield ConfigIssue("network.serviceCidr", network.service_cidr, "must be smaller than a /12 (a /13 or longer prefix)")
    dns_ip = ipaddress.IPv4Address(network.dns_service_ip)
    if dns_ip not in services:
        yield ConfigIssue("network.dnsServiceIp", network.dns_service_ip, f"must lie inside network.serviceCidr ({services})")
    elif dns_ip in (services.network_address, services.network_address + 1, services.broadcast_address):
        yield ConfigIssue(
            "network.dnsServiceIp",
            network.dns_service_ip,
            f"must not be the network, first ({services.network_address + 1}, the API server's) or broadcast address; "
            f"e.g. {services.network_address + 10}",
        )
    pods = network.effective_pod_cidr
    if network.plugin == "azure" and network.pod_cidr:
        yield ConfigIssue("network.podCidr", network.pod_cidr, "is only used with plugin kubenet or azureOverlay; remove it for flat Azure CNI")
    elif pods:
        if _net(pods).overlaps(vnet):
            yield ConfigIssue("network.podCidr", pods, f"must not overlap network.vnetCidr ({vnet})")
        if _net(pods).overlaps(services):
            yield ConfigIssue("network.podCidr", pods, f"must not overlap network.serviceCidr ({services})")


@cross_check("network", "egress")
def _egress_network(network: NetworkConfig, egress: EgressConfig) -> Iterable[ConfigIssue]:
    vnet, nodes = _net(network.vnet_cidr), _net(network.node_subnet_cidr)
    if egress.mode == "firewall":
        if not egress.firewall_subnet_cidr:
            yield ConfigIssue("egress.firewallSubnetCidr", None, "is required when egress.mode is firewall (a /26 or larger inside the VNet)")
        else:
            fw = _net(egress.firewall_subnet_cidr)
            if not fw.subnet_of(vnet):
                yield ConfigIssue("egress.firewallSubnetCidr", egress.firewall_subnet_cidr, f"must lie inside network.vnetCidr ({vnet})")
            if fw.prefixlen > 26:
                yield ConfigIssue("egress.firewallSubnetCidr", egress.firewall_subnet_cidr, "must be a /26 or larger (Azure Firewall requirement)")
            if fw.overlaps(nodes):
                yield ConfigIssue("egress.firewallSubnetCidr", egress.firewall_subnet_cidr, f"must not overlap network.nodeSubnetCidr ({nodes})")
    elif egress.firewall_subnet_cidr:
        yield ConfigIssue("egress.firewallSubnetCidr", egress.firewall_subnet_cidr, "is only used when egress.mode is firewall")


@cross_check("egress")
def _firewall_public_ips(egress: EgressConfig) -> Iterable[ConfigIssue]:
    if egress.firewall_public_ips is not None and egress.mode != "firewall":
        yield ConfigIssue("egress.firewallPublicIps", egress.firewall_public_ips, "is only used when egress.mode is firewall")


def _hub_ranges(network: NetworkConfig) -> list[ipaddress.IPv4Network]:
    return [_net(cidr) for cidr in network.hub.address_space] if network.hub else []


def _in_any(address: str, ranges: Iterable[ipaddress.IPv4Network]) -> bool:
    return any(ipaddress.IPv4Address(address) in cidr for cidr in ranges)


@cross_check("network", "egress", "registry")
def _egress_next_hop(network: NetworkConfig, egress: EgressConfig, registry: RegistryConfig) -> Iterable[ConfigIssue]:
    """The default route's next hop must be reachable when the cluster is created: in this VNet (an appliance in a
    subnet you add) or in the peered hub (https://learn.microsoft.com/azure/aks/egress-outboundtype)."""
    if egress.mode != "external":
        if egress.next_hop_ip:
            yield ConfigIssue("egress.nextHopIp", egress.next_hop_ip, "is only used when egress.mode is external")
        return
    if not egress.next_hop_ip:
        yield ConfigIssue("egress.nextHopIp", None, "is required when egress.mode is external (the private IP of your firewall)")
        return
    hop, vnet = egress.next_hop_ip, _net(network.vnet_cidr)
    ours = {"network.nodeSubnetCidr": network.node_subnet_cidr, "registry.privateEndpointSubnetCidr": registry.private_endpoint_subnet_cidr}
    if not ipaddress.IPv4Address(hop).is_private:
        yield ConfigIssue("egress.nextHopIp", hop, "must be a private address (your firewall's internal IP)")
    elif not (_in_any(hop, [vnet]) or _in_any(hop, _hub_ranges(network))):
        hubs = ", ".join(network.hub.address_space) if network.hub else "none declared"
        yield ConfigIssue(
            "egress.nextHopIp", hop,
            f"is in no network the nodes can reach: allowed: an address in network.vnetCidr ({vnet}) or in "
            f"network.hub.addressSpace ({hubs}); declare the hub that holds your firewall under network.hub",
        )
    for key, cidr in ours.items():
        if cidr and _in_any(hop, [_net(cidr)]):
            yield ConfigIssue("egress.nextHopIp", hop, f"lies in {key} ({cidr}), whose own traffic the default route would send back to it")


@cross_check("network")
def _hub_ranges_apart(network: NetworkConfig) -> Iterable[ConfigIssue]:
    """Peered VNets must not overlap, and pod/service ranges must not overlap peered ranges
    (https://learn.microsoft.com/azure/virtual-network/virtual-network-manage-peering#requirements-and-constraints)."""
    ranges = {"network.vnetCidr": network.vnet_cidr, "network.serviceCidr": network.service_cidr}
    if network.effective_pod_cidr:
        ranges["network.podCidr"] = network.effective_pod_cidr
    for i, hub in enumerate(_hub_ranges(network)):
        for key, cidr in ranges.items():
            if hub.overlaps(_net(cidr)):
                yield ConfigIssue(f"network.hub.addressSpace[{i}]", str(hub), f"overlaps {key} ({cidr}); peered ranges must be disjoint")


@cross_check("network", "egress", "registry")
def _dns_servers_reachable(network: NetworkConfig, egress: EgressConfig, registry: RegistryConfig) -> Iterable[ConfigIssue]:
    """A custom DNS server must exist where the nodes can reach it: Azure DNS, the peered hub, or a subnet this
    program creates (in this VNet but in no subnet of ours, nothing can hold the address)."""
    subnets = [network.node_subnet_cidr] + ([egress.firewall_subnet_cidr] if egress.mode == "firewall" and egress.firewall_subnet_cidr else [])
    reachable = [_net(cidr) for cidr in subnets] + _hub_ranges(network)
    for i, server in enumerate(network.dns_servers):
        if server != AZURE_DNS and not _in_any(server, reachable):
            yield ConfigIssue(
                f"network.dnsServers[{i}]", server,
                f"is reachable from no network: allowed: Azure DNS ({AZURE_DNS}), an address in a subnet this stack creates "
                f"({', '.join(subnets)}) or in network.hub.addressSpace ({', '.join(network.hub.address_space) if network.hub else 'no hub declared'})",
            )


@cross_check("network", "egress", "registry")
def _registry_endpoint_subnet(network: NetworkConfig, egress: EgressConfig, registry: RegistryConfig) -> Iterable[ConfigIssue]:
    """A registry without public access is reached through a private endpoint in a subnet of its own
    (https://learn.microsoft.com/azure/container-registry/container-registry-private-link)."""
    key, cidr = "registry.privateEndpointSubnetCidr", registry.private_endpoint_subnet_cidr
    if registry.public_network_access:
        if cidr:
            yield ConfigIssue(key, cidr, "is only used when registry.publicNetworkAccess is false")
        return
    if not cidr:
        yield ConfigIssue(key, None, f"is required when registry.publicNetworkAccess is false: a free /{SMALLEST_SUBNET_PREFIX} or larger inside network.vnetCidr ({network.vnet_cidr}) for the registry's private endpoint")
        return
    endpoint = _net(cidr)
    if not endpoint.subnet_of(_net(network.vnet_cidr)):
        yield ConfigIssue(key, cidr, f"must lie inside network.vnetCidr ({network.vnet_cidr})")
    if endpoint.prefixlen > SMALLEST_SUBNET_PREFIX:
        yield ConfigIssue(key, cidr, f"is smaller than Azure's smallest subnet; allowed: a /{SMALLEST_SUBNET_PREFIX} or larger")
    others = {"network.nodeSubnetCidr": network.node_subnet_cidr}
    if egress.mode == "firewall" and egress.firewall_subnet_cidr:
        others["egress.firewallSubnetCidr"] = egress.firewall_subnet_cidr
    for other_key, other in others.items():
        if endpoint.overlaps(_net(other)):
            yield ConfigIssue(key, cidr, f"must not overlap {other_key} ({other})")


@cross_check("location", "cluster")
def _private_dns_zone(location: str, cluster: ClusterConfig) -> Iterable[ConfigIssue]:
    """https://learn.microsoft.com/azure/aks/private-clusters: the zone applies to private clusters only, and a zone
    of yours is named after the cluster's region."""
    zone = cluster.private_dns_zone
    if zone != "system" and not cluster.private_cluster:
        yield ConfigIssue("cluster.privateDnsZone", zone, "is only used with cluster.privateCluster true; remove it or make the cluster private")
    region = private_dns_zone_region(zone)
    if region and region != location:
        yield ConfigIssue("cluster.privateDnsZone", zone, f"names region {region}, but the cluster is in {location}; allowed: a zone privatelink.{location}.azmk8s.io")


@cross_check("network", "cluster", "pools")
def _flat_cni_capacity(network: NetworkConfig, cluster: ClusterConfig, pools: list[PoolConfig]) -> Iterable[ConfigIssue]:
    """Flat Azure CNI gives every pod a subnet IP: (nodes + surge) x (maxPods + 1)."""
    if network.plugin != "azure":
        return
    nodes = cluster.system_pool.count + sum(p.max_count for p in pools)
    surge = 1 + len(pools)  # one surge node per pool during upgrades
    needed = (nodes + surge) * (network.effective_max_pods + 1) + AZURE_RESERVED_SUBNET_IPS
    subnet = _net(network.node_subnet_cidr)
    if subnet.num_addresses < needed:
        prefix = 32 - (needed - 1).bit_length()
        yield ConfigIssue(
            "network.nodeSubnetCidr",
            network.node_subnet_cidr,
            f"is too small for flat Azure CNI: ({nodes} nodes + {surge} surge) x ({network.effective_max_pods} maxPods + 1) "
            f"+ {AZURE_RESERVED_SUBNET_IPS} reserved = {needed} addresses; allowed: a /{prefix} or larger "
            "(or use plugin azureOverlay)",
        )


def _repeated_names(section: str, names: Iterable[str], why: str) -> Iterable[ConfigIssue]:
    """`<section>[i].name` for every name already used by an earlier entry."""
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            yield ConfigIssue(f"{section}[{i}].name", name, f"must be unique among {section}{why}")
        seen.add(name)


@cross_check("pools")
def _pool_rules(pools: list[PoolConfig]) -> Iterable[ConfigIssue]:
    yield from _repeated_names("pools", (pool.name for pool in pools), "")
    for i, pool in enumerate(pools):
        key = f"pools[{i}]"
        if pool.min_count > pool.max_count:
            yield ConfigIssue(f"{key}.minCount", pool.min_count, f"must be <= maxCount ({pool.max_count})")
        if pool.accelerator == "gpu" and not vmsizes.is_gpu(pool.vm_size):
            yield ConfigIssue(
                f"{key}.vmSize", pool.vm_size, f"is not a GPU size but accelerator is gpu; allowed: e.g. {vmsizes.CURRENT_GPU_EXAMPLES}"
            )
        if pool.accelerator == "fpga" and not vmsizes.is_fpga(pool.vm_size):
            yield ConfigIssue(f"{key}.vmSize", pool.vm_size, "is not an FPGA size but accelerator is fpga; allowed: Standard_PB6s, Standard_NP10s/20s/40s")
        if pool.accelerator == "none" and (vmsizes.is_gpu(pool.vm_size) or vmsizes.is_fpga(pool.vm_size)):
            yield ConfigIssue(f"{key}.accelerator", pool.accelerator, f"{pool.vm_size} is an accelerator size; set accelerator to gpu or fpga")
        if pool.mig_profile and not vmsizes.supports_mig(pool.vm_size):
            yield ConfigIssue(f"{key}.migProfile", pool.mig_profile, f"needs an A100/H100-class size; {pool.vm_size} has no MIG")


@cross_check("purpose", "cluster")
def _purpose_rules(purpose: str, cluster: ClusterConfig) -> Iterable[ConfigIssue]:
    if purpose in PRODUCTION_PURPOSES and cluster.system_pool.count < 3:
        yield ConfigIssue(
            "cluster.systemPool.count", cluster.system_pool.count, f"{purpose} needs at least 3 system nodes (use DevTest for fewer)"
        )
    if cluster.disable_local_accounts and not cluster.admin_group_object_ids:
        yield ConfigIssue(
            "cluster.adminGroupObjectIds",
            [],
            "needs at least one Entra group object id when cluster.disableLocalAccounts is true (otherwise nobody can administer the cluster)",
        )
    ranges = [_net(cidr) for cidr in cluster.authorized_ip_ranges]
    if ranges and list(ipaddress.collapse_addresses(ranges)) == [_net("0.0.0.0/0")]:
        yield ConfigIssue(
            "cluster.authorizedIpRanges", cluster.authorized_ip_ranges,
            "admit every IPv4 address, which restricts nothing; allowed: the ranges your admins and CI deploy from",
        )
    if cluster.private_cluster and cluster.authorized_ip_ranges:
        yield ConfigIssue("cluster.authorizedIpRanges", cluster.authorized_ip_ranges, "do not apply to a private cluster; remove them or set privateCluster false")


@cross_check("tls")
def _tls_pair(tls: TlsConfig) -> Iterable[ConfigIssue]:
    if bool(tls.certificate) != bool(tls.key):
        missing = "tls.key" if tls.certificate else "tls.certificate"
        yield ConfigIssue(missing, None, "is required with the other half of the TLS pair")
    elif tls.enabled:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            PublicFormat,
            load_pem_private_key,
        )

        leaf = x509.load_pem_x509_certificates(tls.certificate.encode())[0]
        key = load_pem_private_key(tls.key.encode(), password=None)
        as_bytes = lambda k: k.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)  # noqa: E731
        if as_bytes(leaf.public_key()) != as_bytes(key.public_key()):
            yield ConfigIssue("tls.key", REDACTED, "does not belong to the first certificate of tls.certificate")


@cross_check("purpose", "tls", "models")
def _production_needs_tls(purpose: str, tls: TlsConfig, models: list) -> Iterable[ConfigIssue]:
    """The router exists when the stack has models; FastProd/DenseProd serve them over TLS only."""
    if models and purpose in PRODUCTION_PURPOSES and not tls.enabled and not tls.allow_insecure:
        yield ConfigIssue(
            "tls.certificate", None,
            f"is required for {purpose} (set tls.certificate and tls.key as secrets, or tls.allowInsecure: true to serve plain HTTP)",
        )


@cross_check("registry")
def _registry_rules(registry: RegistryConfig) -> Iterable[ConfigIssue]:
    if not registry.public_network_access and registry.sku != "Premium":
        yield ConfigIssue("registry.publicNetworkAccess", False, f"can only be turned off on the Premium sku (registry.sku is {registry.sku})")


@cross_check("models")
def _model_entries(models: list[ModelEntry]) -> Iterable[ConfigIssue]:
    """Names unique, and every path a folder (what is inside it is `services`' concern)."""
    yield from _repeated_names("models", (entry.name for entry in models), " (it names /api/v1/service/<name>/score)")
    for i, entry in enumerate(models):
        if not entry.folder.is_dir():
            yield ConfigIssue(f"models[{i}].path", entry.path, f"is not a directory (resolved against the project root: {entry.folder})")


@cross_check("services")
def _service_folders(services: ServiceFolders) -> Iterable[ConfigIssue]:
    """Every problem of every service folder (its own issues carry `models[i].` keys)."""
    for found in services:
        if found is not None:
            yield from found.issues


def _deployments(services: ServiceFolders) -> Iterable[tuple[int, DeploymentConfig]]:
    """(index, merged v1 deployment) of every model whose deployment is valid."""
    for i, found in enumerate(services):
        if found is not None and found.deployment is not None:
            yield i, found.deployment


@cross_check("services", "auth")
def _token_auth_needs_tenant(services: ServiceFolders, auth: AuthConfig | None) -> Iterable[ConfigIssue]:
    if auth is not None:
        return
    for i, deployment in _deployments(services):
        if deployment.auth_mode == "token":
            yield ConfigIssue(
                f"models[{i}].deployment.tokenAuthEnabled",
                True,
                f"needs {NAMESPACE}:auth with tenantId and audience (the Entra tenant whose tokens are accepted)",
            )


@cross_check("services", "pools")
def _gpu_models_need_gpu_pool(services: ServiceFolders, pools: list[PoolConfig]) -> Iterable[ConfigIssue]:
    if any(pool.accelerator == "gpu" for pool in pools):
        return
    for i, deployment in _deployments(services):
        if deployment.gpu_count > 0:
            yield ConfigIssue(
                f"models[{i}].deployment.gpuCores",
                deployment.gpu_count,
                "needs a GPU node pool; allowed: add a pools entry with accelerator: gpu, or set gpuCores to 0",
            )


@cross_check("cluster", EVALUATED_ON)
def _kubernetes_version_supported(cluster: ClusterConfig, evaluated_on: date) -> Iterable[ConfigIssue]:
    """AKS creates clusters only on minors under support (https://learn.microsoft.com/azure/aks/supported-kubernetes-versions);
    past community support only long-term support (Premium tier, https://learn.microsoft.com/azure/aks/long-term-support)."""
    if cluster.support_plan == LONG_TERM_SUPPORT and cluster.sku_tier != LTS_TIER:
        yield ConfigIssue("cluster.supportPlan", cluster.support_plan, f"needs cluster.skuTier {LTS_TIER}; cluster.skuTier is {cluster.sku_tier}")
    problem = version_problem(cluster.kubernetes_version, evaluated_on, cluster.sku_tier, cluster.support_plan)
    if problem:
        yield ConfigIssue("cluster.kubernetesVersion", cluster.kubernetes_version, problem)
