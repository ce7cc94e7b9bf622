"""The egress allowlist: a pure function of the validated config.

One source of truth for three consumers: the Azure Firewall rules (`components/firewall.py`),
the `egressAllowlist` stack output (for a network team that owns its firewall:
`egress.mode: external`), and the README's egress table (`python -m components.egress`).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from contract.loading import validate_stack_config
from contract.stack import StackConfig

# How a firewall expresses a destination: application rules take FQDNs and FQDN tags;
# network rules take service tags, FQDNs (with DNS proxy) or addresses.
APPLICATION_KINDS = ("fqdn", "fqdnTag")
NETWORK_KINDS = ("serviceTag", "networkFqdn", "networkAddress")


@dataclass(frozen=True, order=True)
class EgressRule:
    kind: str
    destination: str
    protocol: str  # Https | Http (application rules); TCP | UDP (network rules)
    port: int
    why: str

    def as_output(self) -> dict:
        return asdict(self)


# Outbound rules: https://learn.microsoft.com/azure/aks/outbound-rules-control-egress (OUTBOUND below).
# Not listed on purpose: ntp.ubuntu.com:123 (nodes provisioned after March 2021 do not need it) and
# AzureCloud.<region> UDP 1194 / TCP 9000 (not needed with konnectivity, on every current cluster).


def _aks_required(location: str, private_cluster: bool, azure_firewall: bool) -> list[EgressRule]:
    """OUTBOUND, "Azure Global required FQDN / application rules". The AzureKubernetesService FQDN tag exists
    only in Azure Firewall: it is added for ours, never exported to a network team's own firewall."""
    rules = [
        EgressRule("fqdn", "mcr.microsoft.com", "Https", 443, "AKS system images"),
        EgressRule("fqdn", "*.data.mcr.microsoft.com", "Https", 443, "AKS system image layers"),
        EgressRule("fqdn", "mcr-0001.mcr-msedge.net", "Https", 443, "AKS system image layers (edge)"),
        EgressRule("fqdn", "management.azure.com", "Https", 443, "Azure Resource Manager"),
        EgressRule("fqdn", "login.microsoftonline.com", "Https", 443, "Entra ID: managed identities and token-auth JWKS"),
        EgressRule("fqdn", "packages.microsoft.com", "Https", 443, "AKS node packages"),
        EgressRule("fqdn", "acs-mirror.azureedge.net", "Https", 443, "kubenet/CNI binaries"),
        EgressRule("fqdn", "packages.aks.azure.com", "Https", 443, "kubenet/CNI binaries (replaces acs-mirror.azureedge.net)"),
    ]
    if azure_firewall:
        rules.append(EgressRule("fqdnTag", "AzureKubernetesService", "Https", 443, "AKS required FQDNs (Azure Firewall tag)"))
    if not private_cluster:
        rules.append(EgressRule("fqdn", f"*.hcp.{location}.azmk8s.io", "Https", 443, "nodes to the API server"))
    return rules


def _gpu_drivers() -> list[EgressRule]:
    why = "GPU pools: NVIDIA driver and device plugin"
    return [
        EgressRule("fqdn", host, "Https", 443, why)
        for host in ("nvidia.github.io", "us.download.nvidia.com", "download.docker.com", "nvcr.io", "*.nvcr.io")
    ]


def _container_insights(location: str) -> list[EgressRule]:
    """OUTBOUND, "Azure Monitor - Managed Prometheus and Container Insights" (managed-identity authentication)."""
    why = "Container Insights / Azure Monitor"
    rules = [
        EgressRule("fqdn", host, "Https", 443, why)
        for host in (
            "*.ods.opinsights.azure.com",
            "*.oms.opinsights.azure.com",
            "*.monitoring.azure.com",
            "dc.services.visualstudio.com",
            "global.handler.control.monitor.azure.com",
            f"{location}.handler.control.monitor.azure.com",
            "*.ingest.monitor.azure.com",
        )
    ]
    return rules + [EgressRule("serviceTag", "AzureMonitor", "TCP", 443, why)]


def _defender() -> list[EgressRule]:
    """OUTBOUND, "Microsoft Defender for Containers": needed whether or not Container Insights is on."""
    why = "Microsoft Defender for Containers"
    return [
        EgressRule("fqdn", host, "Https", 443, why)
        for host in ("*.ods.opinsights.azure.com", "*.oms.opinsights.azure.com", "*.cloud.defender.microsoft.com")
    ]


def _azure_policy() -> list[EgressRule]:
    """OUTBOUND, "Azure Policy": the add-on (always on, components/cluster_profiles.addon_profiles) fetches
    policies and reports compliance."""
    why = "Azure Policy add-on"
    return [EgressRule("fqdn", host, "Https", 443, why) for host in ("data.policy.core.windows.net", "store.policy.core.windows.net")]


def _registry(config: StackConfig, registry_login_server: str) -> list[EgressRule]:
    """The nodes only pull. A Premium registry serves layers from its dedicated data endpoint
    (components/registry.py enables it), so no storage wildcard is needed; Basic and Standard registries
    serve them from ACR-managed storage accounts, reachable only through `*.blob.core.windows.net` — a
    wildcard any storage account matches (an exfiltration path the README's security section names).
    https://learn.microsoft.com/azure/container-registry/container-registry-dedicated-data-endpoints
    https://learn.microsoft.com/azure/container-registry/container-registry-firewall-access-rules

    A registry without public access is reached through its private endpoint inside the VNet (login server and
    data endpoint resolve to it through privatelink.azurecr.io), never through the firewall: no rule at all
    (https://learn.microsoft.com/azure/container-registry/container-registry-private-link)."""
    if not config.registry.public_network_access:
        return []
    rules = [EgressRule("fqdn", registry_login_server, "Https", 443, "our ACR: model and router images")]
    if config.registry.sku == "Premium":
        registry_name = registry_login_server.split(".")[0]
        return rules + [EgressRule("fqdn", f"{registry_name}.{config.location}.data.azurecr.io", "Https", 443, "our ACR's dedicated data endpoint (image layers)")]
    why = f"our ACR's image layers (a {config.registry.sku} registry has no dedicated data endpoint; Premium removes this wildcard)"
    return rules + [EgressRule("fqdn", "*.blob.core.windows.net", "Https", 443, why)]


def egress_allowlist(config: StackConfig, registry_login_server: str, model_data_account: str | None = None) -> list[EgressRule]:
    """Every destination the platform needs, deduplicated and sorted (stable across runs).

    `model_data_account`: the stack's model-data storage account, when a service collects data: its blob
    host is allowed by name, never a storage wildcard."""
    rules = _aks_required(config.location, config.cluster.private_cluster, azure_firewall=config.egress.mode == "firewall")
    rules += _azure_policy()
    rules += _registry(config, registry_login_server)
    if model_data_account:
        rules.append(EgressRule("fqdn", f"{model_data_account}.blob.core.windows.net", "Https", 443, "model data collection (the stack's storage account)"))
    if config.gpu_pools:
        rules += _gpu_drivers()
    if config.monitoring.container_insights:
        rules += _container_insights(config.location)
    if config.defender:
        rules += _defender()
    for server in config.network.dns_servers:
        rules.append(EgressRule("networkAddress", server, "UDP", 53, "custom DNS servers"))
        rules.append(EgressRule("networkAddress", server, "TCP", 53, "custom DNS servers (TCP fallback)"))
    if config.auth:
        from urllib.parse import urlparse

        authority = urlparse(config.auth.authority)
        if authority.scheme == "https":
            rules.append(EgressRule("fqdn", authority.hostname, "Https", 443, "token auth: the tenant's JWKS (aks-inference:auth)"))
    rules += [EgressRule("fqdn", fqdn, "Https", 443, "egress.extraFqdns") for fqdn in config.egress.extra_fqdns]
    unique = {(r.kind, r.destination, r.protocol, r.port): r for r in rules}
    return sorted(unique.values())


def markdown_table(rules: list[EgressRule]) -> str:
    lines = ["| host | port | used by |", "|---|---|---|"]
    lines += [f"| `{r.destination}` ({r.kind}) | {r.protocol} {r.port} | {r.why} |" for r in rules]
    return "\n".join(lines)


BEGIN, END = "<!-- egress-table:begin -->", "<!-- egress-table:end -->"


def _every_group_on() -> StackConfig:
    """An example config with every optional group switched on (Azure Firewall egress included, for its FQDN
    tag), so the table lists all of them."""
    return validate_stack_config(
        {
            "purpose": "FastProd",
            "cluster": {"systemPool": {"count": 3}, "adminGroupObjectIds": ["00000000-0000-0000-0000-000000000000"]},
            "pools": [{"name": "gpu", "vmSize": "Standard_NC24ads_A100_v4", "accelerator": "gpu"}],
            "network": {"dnsServers": ["10.224.0.4"]},
            "egress": {"mode": "firewall", "firewallSubnetCidr": "10.225.0.0/26", "extraFqdns": ["pypi.org"]},
        },
        "westeurope",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the egress table (host | port | used by), or update it in a file.")
    parser.add_argument("--write", type=Path, help=f"replace the text between {BEGIN} and {END} in this file")
    args = parser.parse_args(argv)
    table = markdown_table(egress_allowlist(_every_group_on(), "<acr>.azurecr.io"))
    if not args.write:
        print(table)
        return 0
    head, _, rest = args.write.read_text().partition(BEGIN)
    _, _, tail = rest.partition(END)
    args.write.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
