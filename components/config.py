"""The public stack-config contract: keys in the `aks-inference:` namespace.

Each top-level key is one pydantic model (a *section*). Sections are validated
independently, then cross-section checks run on every section that parsed, so a
user sees all problems in one go. Nothing here imports Pulumi: the router, the
CLI and the policy pack read the same models.

Adding a key = one model + one field on `StackConfig` (+ cross checks if any).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from components import vmsizes

NAMESPACE = "aks-inference"


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class ConfigIssue:
    """One problem: the full key, the value found, and what is allowed."""

    key: str
    value: Any
    problem: str

    def __str__(self) -> str:
        return f"{self.key}: {self.problem} (got {self.value!r})"


class ConfigError(ValueError):
    """Every problem found in a stack's config, reported together."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        lines = "\n".join(f"  - {issue}" for issue in issues)
        super().__init__(f"{len(issues)} problem(s) in the stack config:\n{lines}")


REDACTED = "[secret]"


# --------------------------------------------------------------------------- value types


def _cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.IPv4Network(value, strict=False)
            raise ValueError(f"host bits are set; allowed: the network address, e.g. {fixed}") from None
        raise ValueError("must be an IPv4 CIDR such as 10.0.0.0/16") from None
    return str(network)


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError("must be an IPv4 address such as 10.0.0.10") from None


_FQDN = re.compile(r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def _fqdn(value: str) -> str:
    if not _FQDN.match(value):
        raise ValueError("must be a lowercase host name such as pypi.org or *.example.com")
    return value


_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _guid(value: str) -> str:
    if not _GUID.match(value.lower()):
        raise ValueError("must be a GUID such as 00000000-0000-0000-0000-000000000000")
    return value.lower()


def _vm_size(value: str) -> str:
    if not vmsizes.is_well_formed(value):
        raise ValueError("must be an Azure VM size name such as Standard_D4ds_v5")
    retired = vmsizes.retirement(value)
    if retired:
        raise ValueError(
            f"{value} was retired on {retired.retired_on}; allowed: a current size, e.g. {retired.successor}"
        )
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
Fqdn = Annotated[str, AfterValidator(_fqdn)]
Guid = Annotated[str, AfterValidator(_guid)]
VmSize = Annotated[str, AfterValidator(_vm_size)]


class Section(BaseModel):
    """Base of every config model: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, frozen=True, populate_by_name=False)


# --------------------------------------------------------------------------- sections

Purpose = Literal["DevTest", "FastProd", "DenseProd"]
PRODUCTION_PURPOSES = ("FastProd", "DenseProd")

DEFAULT_MAX_PODS = {"kubenet": 110, "azure": 30, "azureOverlay": 250}


class NetworkConfig(Section):
    plugin: Literal["kubenet", "azure", "azureOverlay"] = "azureOverlay"
    vnet_cidr: Cidr = "10.224.0.0/12"
    node_subnet_cidr: Cidr = "10.224.0.0/16"
    pod_cidr: Cidr | None = None
    service_cidr: Cidr = "10.0.0.0/16"
    dns_service_ip: IPv4 = "10.0.0.10"
    dns_servers: list[IPv4] = Field(default_factory=list)
    max_pods: int | None = Field(default=None, ge=10, le=250)

    @property
    def effective_pod_cidr(self) -> str | None:
        """Pod CIDR AKS will use: none for flat Azure CNI (pods take subnet IPs)."""
        if self.plugin == "azure":
            return None
        return self.pod_cidr or "10.244.0.0/16"

    @property
    def effective_max_pods(self) -> int:
        return self.max_pods or DEFAULT_MAX_PODS[self.plugin]


class EgressConfig(Section):
    mode: Literal["loadBalancer", "firewall", "external"] = "loadBalancer"
    firewall_subnet_cidr: Cidr | None = None
    next_hop_ip: IPv4 | None = None
    extra_fqdns: list[Fqdn] = Field(default_factory=list)
    threat_intel_mode: Literal["Alert", "Deny", "Off"] = "Deny"


class SystemPoolConfig(Section):
    vm_size: VmSize = "Standard_D4ds_v5"
    count: int = Field(default=1, ge=1, le=100)


_K8S_VERSION = re.compile(r"^1\.[0-9]{2}(\.[0-9]+)?$")


def _k8s_version(value: str) -> str:
    if not _K8S_VERSION.match(value):
        raise ValueError("must be a Kubernetes minor or patch version such as 1.34 or 1.34.2")
    return value


class ClusterConfig(Section):
    kubernetes_version: Annotated[str, AfterValidator(_k8s_version)] = "1.34"
    system_pool: SystemPoolConfig = Field(default_factory=SystemPoolConfig)
    sku_tier: Literal["Free", "Standard", "Premium"] = "Standard"
    private_cluster: bool = False
    authorized_ip_ranges: list[Cidr] = Field(default_factory=list)
    disable_local_accounts: bool = True
    admin_group_object_ids: list[Guid] = Field(default_factory=list)


_POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_TAINT = re.compile(r"^[^=:\s]+=[^=:\s]*:(NoSchedule|PreferNoSchedule|NoExecute)$")


def _pool_name(value: str) -> str:
    if not _POOL_NAME.match(value):
        raise ValueError("must be 1-12 lowercase letters or digits starting with a letter (AKS Linux pool rules)")
    if value == "system":
        raise ValueError("'system' is the name of the built-in system pool; choose another name")
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, label in value.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(f"label key {key!r} is not a valid Kubernetes label key")
        if not _LABEL_VALUE.match(label):
            raise ValueError(f"label value {label!r} of {key!r} is not a valid Kubernetes label value")
    return dict(sorted(value.items()))


def _taint(value: str) -> str:
    if not _TAINT.match(value):
        raise ValueError("must look like key=value:NoSchedule (effects: NoSchedule, PreferNoSchedule, NoExecute)")
    return value


GPU_TAINT = "sku=gpu:NoSchedule"
FPGA_TAINT = "sku=fpga:NoSchedule"
ACCELERATOR_LABEL = "aks-inference/accelerator"


class PoolConfig(Section):
    name: Annotated[str, AfterValidator(_pool_name)]
    vm_size: VmSize
    accelerator: Literal["none", "gpu", "fpga"] = "none"
    min_count: int = Field(default=1, ge=0, le=1000)
    max_count: int = Field(default=3, ge=1, le=1000)
    mig_profile: Literal[vmsizes.MIG_PROFILES] | None = None  # type: ignore[valid-type]
    labels: Annotated[dict[str, str], AfterValidator(_labels)] = Field(default_factory=dict)
    taints: list[Annotated[str, AfterValidator(_taint)]] = Field(default_factory=list)

    @property
    def effective_taints(self) -> list[str]:
        """User taints plus the accelerator taint every GPU/FPGA pool carries."""
        required = {"gpu": [GPU_TAINT], "fpga": [FPGA_TAINT]}.get(self.accelerator, [])
        return required + [t for t in self.taints if t not in required]

    @property
    def effective_labels(self) -> dict[str, str]:
        labels = dict(self.labels)
        if self.accelerator != "none":
            labels[ACCELERATOR_LABEL] = self.accelerator
        return dict(sorted(labels.items()))


class RegistryConfig(Section):
    sku: Literal["Basic", "Standard", "Premium"] = "Premium"
    public_network_access: bool = True


class MonitoringConfig(Section):
    container_insights: bool = True
    retention_days: int = Field(default=30, ge=30, le=730)


class ModelDataConfig(Section):
    """The stack's model data storage (created only when a service has `dataCollection.storageEnabled`)."""

    # Delete collected blobs this many days after they were written; None keeps them.
    retention_days: int | None = Field(default=None, ge=1, le=36500)


# Relative `models[].path` values resolve here (the folder with Pulumi.yaml), whatever the working directory.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class KeyRotation(Section):
    """Bump one counter to regenerate that key only (v1's `regen_key`); the other keeps working meanwhile."""

    primary: int = Field(default=0, ge=0)
    secondary: int = Field(default=0, ge=0)


class ModelEntry(Section):
    """One model service: a v1 service folder plus deployment overrides in v1 keys (see serving/v1.py)."""

    name: str
    path: str
    model_dir: str = "model"
    deployment: dict[str, Any] = Field(default_factory=dict)
    key_rotation: KeyRotation = Field(default_factory=KeyRotation)

    @property
    def folder(self) -> Path:
        return PROJECT_ROOT / self.path


def _audience(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError("must be the token audience (aud), e.g. api://aks-inference or the app's client id")
    return value


def _authority(value: str) -> str:
    loopback = re.match(r"^http://(127\.0\.0\.1|localhost)(:[0-9]+)?$", value)
    if not (loopback or re.match(r"^https://[a-z0-9.-]+(:[0-9]+)?$", value)):
        raise ValueError("must be an https:// origin without a path, e.g. https://login.microsoftonline.us (http only on loopback)")
    return value


class AuthConfig(Section):
    """Entra ID token auth for services with `tokenAuthEnabled`."""

    tenant_id: Guid
    audience: Annotated[str, AfterValidator(_audience)]
    # sovereign clouds use another login host; a loopback one serves a test JWKS
    authority: Annotated[str, AfterValidator(_authority)] = "https://login.microsoftonline.com"

    @property
    def issuer(self) -> str:
        return f"{self.authority}/{self.tenant_id}/v2.0"

    @property
    def jwks_uri(self) -> str:
        return f"{self.authority}/{self.tenant_id}/discovery/v2.0/keys"


_DNS_LABEL = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")


def _dns_label(value: str) -> str:
    if not _DNS_LABEL.match(value):
        raise ValueError("must be 3-63 lowercase letters, digits or dashes, starting with a letter (Azure DNS label rules)")
    return value


class RouterConfig(Section):
    """The router's public face: a LoadBalancer Service, optionally with an Azure DNS label."""

    load_balancer: Literal["public", "internal"] = "public"
    dns_label: Annotated[str, AfterValidator(_dns_label)] | None = None
    replicas: int | None = Field(default=None, ge=1, le=50)


def _pem_certificates(value: str) -> str:
    from cryptography import x509

    try:
        x509.load_pem_x509_certificates(value.encode())
    except ValueError:
        raise ValueError("must be a PEM certificate chain (leaf first)") from None
    return value


def _pem_key(value: str) -> str:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        load_pem_private_key(value.encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError("must be an unencrypted PEM private key") from None
    return value


class TlsConfig(Section):
    """TLS on the router (set the PEMs with `pulumi config set --secret --path`)."""

    certificate: Annotated[str, AfterValidator(_pem_certificates)] | None = None
    key: Annotated[str, AfterValidator(_pem_key)] | None = None
    cname: Fqdn | None = None
    allow_insecure: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.certificate and self.key)


class StackConfig(Section):
    """The whole `aks-inference:` namespace plus the region."""

    location: Annotated[str, AfterValidator(lambda v: _location(v))]
    purpose: Purpose
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    egress: EgressConfig = Field(default_factory=EgressConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    pools: list[PoolConfig] = Field(default_factory=list)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    model_data: ModelDataConfig = Field(default_factory=ModelDataConfig)
    defender: bool = True
    router: RouterConfig = Field(default_factory=RouterConfig)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    models: list[ModelEntry] = Field(default_factory=list)
    auth: AuthConfig | None = None

    @property
    def is_production(self) -> bool:
        return self.purpose in PRODUCTION_PURPOSES

    @property
    def gpu_pools(self) -> list[PoolConfig]:
        return [p for p in self.pools if p.accelerator == "gpu"]


_LOCATION = re.compile(r"^[a-z][a-z0-9]{2,}$")


def _location(value: str) -> str:
    if not _LOCATION.match(value):
        raise ValueError("must be an Azure region name such as westeurope (set azure-native:location)")
    return value


# Config keys whose values never appear in messages.
SECRET_KEYS: frozenset[str] = frozenset({"tls"})

# --------------------------------------------------------------------------- cross-section checks

CrossCheck = Callable[..., Iterable[ConfigIssue]]
_CROSS_CHECKS: list[tuple[tuple[str, ...], CrossCheck]] = []


def cross_check(*sections: str) -> Callable[[CrossCheck], CrossCheck]:
    """Register a check that needs these sections; it runs only when all of them parsed."""

    def register(fn: CrossCheck) -> CrossCheck:
        _CROSS_CHECKS.append((sections, fn))
        return fn

    return register


def _net(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)


# Ranges AKS refuses for the service CIDR.
AKS_FORBIDDEN_SERVICE_RANGES = ("169.254.0.0/16", "172.30.0.0/16", "172.31.0.0/16", "192.0.2.0/24")
AZURE_RESERVED_SUBNET_IPS = 5


@cross_check("network")
def _network_ranges(network: NetworkConfig) -> Iterable[ConfigIssue]:
    vnet, nodes, services = _net(network.vnet_cidr), _net(network.node_subnet_cidr), _net(network.service_cidr)
    if not nodes.subnet_of(vnet):
        yield ConfigIssue("network.nodeSubnetCidr", network.node_subnet_cidr, f"must lie inside network.vnetCidr ({vnet})")
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
def _egress_next_hop(egress: EgressConfig) -> Iterable[ConfigIssue]:
    if egress.mode == "external":
        if not egress.next_hop_ip:
            yield ConfigIssue("egress.nextHopIp", None, "is required when egress.mode is external (the private IP of your firewall)")
        elif not ipaddress.IPv4Address(egress.next_hop_ip).is_private:
            yield ConfigIssue("egress.nextHopIp", egress.next_hop_ip, "must be a private address (your firewall's internal IP)")
    elif egress.next_hop_ip:
        yield ConfigIssue("egress.nextHopIp", egress.next_hop_ip, "is only used when egress.mode is external")


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


@cross_check("pools")
def _pool_rules(pools: list[PoolConfig]) -> Iterable[ConfigIssue]:
    seen: set[str] = set()
    for i, pool in enumerate(pools):
        key = f"pools[{i}]"
        if pool.name in seen:
            yield ConfigIssue(f"{key}.name", pool.name, "must be unique among pools")
        seen.add(pool.name)
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
    if cluster.private_cluster and cluster.authorized_ip_ranges:
        yield ConfigIssue("cluster.authorizedIpRanges", cluster.authorized_ip_ranges, "do not apply to a private cluster; remove them or set privateCluster false")


@cross_check("tls")
def _tls_pair(tls: TlsConfig) -> Iterable[ConfigIssue]:
    if bool(tls.certificate) != bool(tls.key):
        missing = "tls.key" if tls.certificate else "tls.certificate"
        yield ConfigIssue(missing, None, "is required with the other half of the TLS pair")
    elif tls.enabled:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

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
def _model_services(models: list[ModelEntry]) -> Iterable[ConfigIssue]:
    """Names unique, and every service folder loads (its own issues carry `models[i].` keys)."""
    from serving import v1

    seen: set[str] = set()
    for i, entry in enumerate(models):
        key = f"models[{i}]"
        if entry.name in seen:
            yield ConfigIssue(f"{key}.name", entry.name, "must be unique among models (it names /api/v1/service/<name>/score)")
        seen.add(entry.name)
        if not entry.folder.is_dir():
            yield ConfigIssue(f"{key}.path", entry.path, f"is not a directory (resolved against the project root: {entry.folder})")
            continue
        try:
            v1.load_service(entry.folder, entry.name, entry.deployment, model_dir=entry.model_dir, key=key)
        except v1.ServiceConfigError as exc:
            yield from exc.issues


def _deployments(models: list[ModelEntry]) -> Iterable[tuple[int, Any]]:
    """(index, merged v1 deployment) of every model whose deployment is valid."""
    from serving import v1

    for i, entry in enumerate(models):
        deployment = v1.load_deployment(entry.folder, entry.deployment) if entry.folder.is_dir() else None
        if deployment is not None:
            yield i, deployment


@cross_check("models", "auth")
def _token_auth_needs_tenant(models: list[ModelEntry], auth: AuthConfig | None) -> Iterable[ConfigIssue]:
    if auth is not None:
        return
    for i, deployment in _deployments(models):
        if deployment.auth_mode == "token":
            yield ConfigIssue(
                f"models[{i}].deployment.tokenAuthEnabled",
                True,
                f"needs {NAMESPACE}:auth with tenantId and audience (the Entra tenant whose tokens are accepted)",
            )


@cross_check("models", "pools")
def _gpu_models_need_gpu_pool(models: list[ModelEntry], pools: list[PoolConfig]) -> Iterable[ConfigIssue]:
    if any(pool.accelerator == "gpu" for pool in pools):
        return
    for i, deployment in _deployments(models):
        if deployment.gpu_count > 0:
            yield ConfigIssue(
                f"models[{i}].deployment.gpuCores",
                deployment.gpu_count,
                "needs a GPU node pool; allowed: add a pools entry with accelerator: gpu, or set gpuCores to 0",
            )


# --------------------------------------------------------------------------- loading


def _alias(field_name: str, model: type[BaseModel]) -> str:
    field = model.model_fields[field_name]
    return field.alias or field_name


def _aliases(model: type[BaseModel]) -> list[str]:
    return [_alias(name, model) for name in model.model_fields]


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated/Optional/list wrappers to reach a model class."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (list, typing.Union) or str(origin) == "<class 'types.UnionType'>":
        for arg in typing.get_args(annotation):
            inner = _unwrap(arg)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return annotation


def _model_at(root: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that owns the key at `path` (aliases and list indexes), if any."""
    model: Any = root
    for part in path:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        by_alias = {_alias(n, model): n for n in model.model_fields}
        if part not in by_alias:
            return None
        model = _unwrap(model.model_fields[by_alias[part]].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _key(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _issues_from(
    error: ValidationError, section: str, secret: bool, root: type[BaseModel] | None = None
) -> list[ConfigIssue]:
    """Issues keyed `section.<loc>`; `root` is the model `loc` starts from (default: the stack config)."""
    issues = []
    for err in error.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-after")))
        path = (section, *loc)
        value = REDACTED if secret else err.get("input")
        if err["type"] == "extra_forbidden":
            owner = _model_at(StackConfig, path[:-1]) if root is None else _model_at(root, loc[:-1])
            allowed = _aliases(owner) if owner else []
            close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problem = f"unknown key; {hint}allowed keys: {', '.join(allowed)}"
            value = str(path[-1])
        elif err["type"] == "missing":
            problem = "is required"
            value = None
        else:
            problem = err["msg"].removeprefix("Value error, ")
        issues.append(ConfigIssue(_key(path), value, problem))
    return issues


def parse_config_value(raw: str) -> Any:
    """Pulumi hands every config value over as a string; objects and lists as JSON."""
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return raw


def validate_stack_config(values: Mapping[str, Any], location: Any, secret_keys: Iterable[str] = ()) -> StackConfig:
    """Validate `aks-inference:*` values (keys without the namespace). Raises ConfigError with every issue."""
    secret = set(secret_keys) | SECRET_KEYS
    issues: list[ConfigIssue] = []
    parsed: dict[str, Any] = {}
    sections = {_alias(name, StackConfig): name for name in StackConfig.model_fields}
    for key in values:
        if key not in sections or key == "location":
            allowed = [k for k in sections if k != "location"]
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
            hint = f"did you mean {NAMESPACE}:{close[0]}? " if close else ""
            issues.append(ConfigIssue(f"{NAMESPACE}:{key}", key, f"unknown key; {hint}allowed keys: {', '.join(allowed)}"))
    candidates = dict(values)
    if location is None:
        issues.append(ConfigIssue("azure-native:location", None, "is required (the Azure region, e.g. westeurope)"))
    else:
        candidates["location"] = location
    for alias, name in sections.items():
        field = StackConfig.model_fields[name]
        if alias not in candidates:
            if field.is_required():
                if alias != "location":
                    issues.append(ConfigIssue(alias, None, f"is required; allowed: {_allowed(field.annotation)}"))
                continue
            parsed[alias] = field.get_default(call_default_factory=True)
            continue
        try:
            parsed[alias] = TypeAdapter(field.annotation).validate_python(candidates[alias])
        except ValidationError as exc:
            issues.extend(_issues_from(exc, alias if alias != "location" else "azure-native:location", alias in secret))
    for needed, check in _CROSS_CHECKS:
        if all(s in parsed for s in needed):
            for issue in check(*(parsed[s] for s in needed)):
                issues.append(ConfigIssue(issue.key, REDACTED if re.split(r"[.\[]", issue.key)[0] in secret else issue.value, issue.problem))
    if issues:
        raise ConfigError(issues)
    return StackConfig.model_validate(parsed)


def _allowed(annotation: Any) -> str:
    args = typing.get_args(annotation)
    return " | ".join(map(str, args)) if typing.get_origin(annotation) is Literal else str(annotation)
