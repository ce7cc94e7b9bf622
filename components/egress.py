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


def _aks_required(location: str, private_cluster: bool) -> list[EgressRule]:
    rules = [
        EgressRule("fqdnTag", "AzureKubernetesService", "Https", 443, "AKS required FQDNs (Microsoft-maintained tag)"),
        EgressRule("fqdn", "mcr.microsoft.com", "Https", 443, "AKS system images"),
        EgressRule("fqdn", "*.data.mcr.microsoft.com", "Https", 443, "AKS system image layers"),
        EgressRule("fqdn", "mcr-0001.mcr-msedge.net", "Https", 443, "AKS system image layers (edge)"),
        EgressRule("fqdn", "management.azure.com", "Https", 443, "Azure Resource Manager"),
        EgressRule("fqdn", "login.microsoftonline.com", "Https", 443, "Entra ID: managed identities and token-auth JWKS"),
        EgressRule("fqdn", "packages.microsoft.com", "Https", 443, "AKS node packages"),
        EgressRule("fqdn", "acs-mirror.azureedge.net", "Https", 443, "kubenet/CNI binaries"),
        EgressRule("networkFqdn", "ntp.ubuntu.com", "UDP", 123, "node time sync"),
    ]
    if not private_cluster:
        rules += [
            EgressRule("fqdn", f"*.hcp.{location}.azmk8s.io", "Https", 443, "nodes to the API server"),
            EgressRule("serviceTag", f"AzureCloud.{location}", "UDP", 1194, "node to control-plane tunnel"),
            EgressRule("serviceTag", f"AzureCloud.{location}", "TCP", 9000, "node to control-plane tunnel"),
        ]
    return rules


def _gpu_drivers() -> list[EgressRule]:
    why = "GPU pools: NVIDIA driver and device plugin"
    return [
        EgressRule("fqdn", host, "Https", 443, why)
        for host in ("nvidia.github.io", "us.download.nvidia.com", "download.docker.com", "nvcr.io", "*.nvcr.io")
    ]


def _container_insights(location: str) -> list[EgressRule]:
    why = "Container Insights / Azure Monitor"
    return [
        EgressRule("fqdn", host, "Https", 443, why)
        for host in (
            "*.ods.opinsights.azure.com",
            "*.oms.opinsights.azure.com",
            "*.monitoring.azure.com",
            "dc.services.visualstudio.com",
            f"{location}.ingest.monitor.azure.com",
            f"{location}.handler.control.monitor.azure.com",
        )
    ]


def egress_allowlist(config: StackConfig, registry_login_server: str) -> list[EgressRule]:
    """Every destination the platform needs, deduplicated and sorted (stable across runs)."""
    registry_name = registry_login_server.split(".")[0]
    rules = _aks_required(config.location, config.cluster.private_cluster)
    rules += [
        EgressRule("fqdn", registry_login_server, "Https", 443, "our ACR: model and router images"),
        EgressRule("fqdn", f"{registry_name}.{config.location}.data.azurecr.io", "Https", 443, "our ACR data endpoint"),
        EgressRule("fqdn", "*.blob.core.windows.net", "Https", 443, "platform storage endpoints"),
    ]
    if config.gpu_pools:
        rules += _gpu_drivers()
    if config.monitoring.container_insights:
        rules += _container_insights(config.location)
    if config.defender:
        rules.append(EgressRule("fqdn", "*.cloud.defender.microsoft.com", "Https", 443, "Microsoft Defender for Containers"))
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
    """An example config with every optional group switched on, so the table lists all of them."""
    return validate_stack_config(
        {
            "purpose": "FastProd",
            "cluster": {"systemPool": {"count": 3}, "adminGroupObjectIds": ["00000000-0000-0000-0000-000000000000"]},
            "pools": [{"name": "gpu", "vmSize": "Standard_NC24ads_A100_v4", "accelerator": "gpu"}],
            "network": {"dnsServers": ["10.224.0.4"]},
            "egress": {"extraFqdns": ["pypi.org"]},
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
