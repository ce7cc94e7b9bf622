"""The public stack-config contract: keys in the `aks-inference:` namespace.

Each top-level key is one pydantic model (a *section*). Sections are validated independently
(`contract.loading`), then cross-section checks run on every section that parsed
(`contract.checks`), so a user sees all problems in one go. Nothing here imports Pulumi: the
deployers, the CLI and the policy pack read the same models.

Adding a key = one model + one field on `StackConfig` (+ cross checks if any).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from contract import limits, vmsizes
from contract.endpoints import EndpointVersion, RolloutPolicy
from contract.errors import Section
from contract.kubernetes_versions import COMMUNITY_SUPPORT, SUPPORT_PLANS

NAMESPACE = "aks-inference"

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




def _guid(value: str) -> str:
    if not limits.is_guid(value):
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

# --------------------------------------------------------------------------- sections

Purpose = Literal["DevTest", "FastProd", "DenseProd"]
PRODUCTION_PURPOSES = ("FastProd", "DenseProd")

DEFAULT_MAX_PODS = {"kubenet": 110, "azure": 30, "azureOverlay": 250}


# An Azure resource id, e.g. /subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<name>.
_RESOURCE_ID = re.compile(
    r"^/subscriptions/(?P<subscription>[0-9a-fA-F-]{36})/resourceGroups/(?P<group>[-\w.()]{1,90})"
    r"/providers/(?P<provider>[A-Za-z.]+)/(?P<kind>[A-Za-z]+)/(?P<name>[-\w.]{1,80})$"
)


def resource_id_parts(value: str) -> dict[str, str] | None:
    """subscription, group, provider, kind and name of an Azure resource id; None if it is not one."""
    found = _RESOURCE_ID.match(value)
    return found.groupdict() if found else None


def _vnet_id(value: str) -> str:
    parts = resource_id_parts(value)
    if not parts or (parts["provider"].lower(), parts["kind"].lower()) != ("microsoft.network", "virtualnetworks"):
        raise ValueError(
            "must be a virtual network resource id: "
            "/subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<name>"
        )
    return value


class HubConfig(Section):
    """The hub VNet this stack's VNet peers with (hub-and-spoke): both peerings are created, so the deploying
    identity needs Network Contributor on the hub VNet too."""

    vnet_id: Annotated[str, AfterValidator(_vnet_id)]
    # The hub's address ranges: the checks need them (next hop, DNS servers, overlaps) before anything exists.
    address_space: list[Cidr] = Field(min_length=1)
    # The hub has a VPN/ExpressRoute gateway whose on-premises routes this VNet should use: the spoke side
    # sets useRemoteGateways, the hub side allowGatewayTransit (https://learn.microsoft.com/azure/virtual-network/virtual-network-manage-peering).
    use_remote_gateways: bool = False

    @property
    def parts(self) -> dict[str, str]:
        return resource_id_parts(self.vnet_id)  # type: ignore[return-value]


# Azure DNS, reachable from every VNet (https://learn.microsoft.com/azure/virtual-network/what-is-ip-address-168-63-129-16).
AZURE_DNS = "168.63.129.16"


class NetworkConfig(Section):
    plugin: Literal["kubenet", "azure", "azureOverlay"] = "azureOverlay"
    vnet_cidr: Cidr = "10.224.0.0/12"
    node_subnet_cidr: Cidr = "10.224.0.0/16"
    pod_cidr: Cidr | None = None
    service_cidr: Cidr = "10.0.0.0/16"
    dns_service_ip: IPv4 = "10.0.0.10"
    dns_servers: list[IPv4] = Field(default_factory=list)
    max_pods: int | None = Field(default=None, ge=10, le=250)
    hub: HubConfig | None = None

    @property
    def effective_pod_cidr(self) -> str | None:
        """Pod CIDR AKS will use: none for flat Azure CNI (pods take subnet IPs)."""
        if self.plugin == "azure":
            return None
        return self.pod_cidr or "10.244.0.0/16"

    @property
    def effective_max_pods(self) -> int:
        return self.max_pods or DEFAULT_MAX_PODS[self.plugin]


# Azure Firewall takes at most 250 public IPs, DNAT destinations included
# (https://learn.microsoft.com/azure/firewall/deploy-multi-public-ip-powershell); the program adds at most one
# DNAT destination (the router's), so 249 is the most the firewall can get.
MAX_FIREWALL_PUBLIC_IPS = 249
# Each public IP adds 2,496 SNAT ports per firewall instance (https://learn.microsoft.com/azure/firewall/firewall-best-practices);
# for production AKS recommends "a minimum of 20 frontend IPs" on the firewall to avoid SNAT port exhaustion
# (https://learn.microsoft.com/azure/aks/limit-egress-traffic). DevTest keeps one.
PRODUCTION_FIREWALL_PUBLIC_IPS = 20


class EgressConfig(Section):
    mode: Literal["loadBalancer", "firewall", "external"] = "loadBalancer"
    firewall_subnet_cidr: Cidr | None = None
    # egress.mode firewall only: its Standard static public IPs (None: the purpose default,
    # StackConfig.firewall_public_ip_count).
    firewall_public_ips: int | None = Field(default=None, ge=1, le=MAX_FIREWALL_PUBLIC_IPS)
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


# How the Kubernetes provider signs in to an Entra-only cluster: the `kubelogin convert-kubeconfig -l` modes
# (https://azure.github.io/kubelogin/concepts/login-modes.html). azurecli: the `az login` session (a developer's,
# or CI's after azure/login with OIDC federation); workloadIdentity: a federated token file (AZURE_CLIENT_ID,
# AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE); spn: a service principal secret (AAD_SERVICE_PRINCIPAL_CLIENT_ID,
# AAD_SERVICE_PRINCIPAL_CLIENT_SECRET); interactive: a browser sign-in, for a person at the keyboard only.
KubeLogin = Literal["azurecli", "workloadIdentity", "spn", "interactive"]


PRIVATE_DNS_ZONE_MODES = ("system", "none")
_AKS_PRIVATE_ZONE = re.compile(r"^([a-z0-9-]+\.)?privatelink\.(?P<region>[a-z0-9]+)\.azmk8s\.io$")


def private_dns_zone_region(zone_id: str) -> str | None:
    """The region in a private DNS zone id's name (privatelink.<region>.azmk8s.io); None for system/none."""
    parts = resource_id_parts(zone_id)
    found = _AKS_PRIVATE_ZONE.match(parts["name"].lower()) if parts else None
    return found["region"] if found else None


def _private_dns_zone(value: str) -> str:
    if value in PRIVATE_DNS_ZONE_MODES:
        return value
    parts = resource_id_parts(value)
    if not parts or (parts["provider"].lower(), parts["kind"].lower()) != ("microsoft.network", "privatednszones") or not private_dns_zone_region(value):
        raise ValueError(
            "allowed: system, none, or a private DNS zone id "
            "/subscriptions/<guid>/resourceGroups/<group>/providers/Microsoft.Network/privateDnsZones/privatelink.<region>.azmk8s.io"
        )
    return value


class ClusterConfig(Section):
    # A minor under AKS support on the day the stack is evaluated (contract/kubernetes_versions.py).
    kubernetes_version: Annotated[str, AfterValidator(_k8s_version)] = "1.36"
    system_pool: SystemPoolConfig = Field(default_factory=SystemPoolConfig)
    sku_tier: Literal["Free", "Standard", "Premium"] = "Standard"
    # AKSLongTermSupport keeps a minor a year past its community end of life; it needs skuTier Premium.
    support_plan: Literal[SUPPORT_PLANS] = COMMUNITY_SUPPORT  # type: ignore[valid-type]
    kube_login: KubeLogin = "azurecli"
    private_cluster: bool = False
    # Private clusters only: where the API server's private name lives (https://learn.microsoft.com/azure/aks/private-clusters):
    # `system` (AKS creates privatelink.<region>.azmk8s.io in the node resource group), `none` (public DNS only), or the
    # resource id of a zone of yours named privatelink.<region>.azmk8s.io or <subzone>.privatelink.<region>.azmk8s.io.
    private_dns_zone: Annotated[str, AfterValidator(lambda v: _private_dns_zone(v))] = "system"
    authorized_ip_ranges: list[Cidr] = Field(default_factory=list)
    disable_local_accounts: bool = True
    admin_group_object_ids: list[Guid] = Field(default_factory=list)


_POOL_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
# Kubernetes qualified names (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set):
# an optional DNS-subdomain prefix (<= 253) and '/', then a name of <= 63; values <= 63, possibly empty.
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
# Node labels are applied by the kubelet, which may not set labels under kubernetes.io or k8s.io except
# these (NodeRestriction: https://kubernetes.io/docs/reference/access-authn-authz/admission-controllers/#noderestriction);
# AKS reserves kubernetes.azure.com (https://learn.microsoft.com/azure/aks/use-labels#unavailable-labels).
_KUBELET_PREFIXES = ("kubelet.kubernetes.io", "node.kubernetes.io")
_RESTRICTED_DOMAINS = ("kubernetes.io", "k8s.io")
_AKS_RESERVED_PREFIX = "kubernetes.azure.com"


def qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a Kubernetes label or taint key, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not (len(prefix) <= 253 and _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"{key!r} has an invalid prefix: a lowercase DNS subdomain of at most 253 characters before '/'"
    if not _QUALIFIED_NAME.fullmatch(name):
        return f"{key!r} is not a valid Kubernetes key: at most 63 ASCII letters, digits, '-', '_' or '.', alphanumeric at both ends"
    return None


def node_label_problem(key: str) -> str | None:
    """Why the kubelet or AKS would refuse `key` as a node label, or None."""
    prefix = key.rpartition("/")[0]
    if prefix == _AKS_RESERVED_PREFIX or prefix.endswith("." + _AKS_RESERVED_PREFIX):
        return f"{key!r} uses the prefix {_AKS_RESERVED_PREFIX}/, which AKS reserves"
    restricted = any(prefix == d or prefix.endswith("." + d) for d in _RESTRICTED_DOMAINS)
    if restricted and not any(prefix == p or prefix.endswith("." + p) for p in _KUBELET_PREFIXES):
        return f"{key!r} is under kubernetes.io/k8s.io, which the kubelet may not set; allowed there: {', '.join(p + '/' for p in _KUBELET_PREFIXES)}"
    return None


def _pool_name(value: str) -> str:
    if not _POOL_NAME.match(value):
        raise ValueError("must be 1-12 lowercase letters or digits starting with a letter (AKS Linux pool rules)")
    if value == "system":
        raise ValueError("'system' is the name of the built-in system pool; choose another name")
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    for key, label in value.items():
        problem = qualified_name_problem(key) or node_label_problem(key)
        if problem:
            raise ValueError(f"label key {problem}")
        if not _LABEL_VALUE.fullmatch(label):
            raise ValueError(f"label value {label!r} of {key!r} is not a valid Kubernetes label value (at most 63 ASCII letters, digits, '-', '_' or '.')")
    return dict(sorted(value.items()))


def _taint(value: str) -> str:
    key_value, _, effect = value.rpartition(":")
    key, equals, taint_value = key_value.partition("=")
    if not (equals and effect in _TAINT_EFFECTS):
        raise ValueError(f"must look like key=value:NoSchedule (effects: {', '.join(_TAINT_EFFECTS)})")
    problem = qualified_name_problem(key)
    if problem:
        raise ValueError(f"taint key {problem}")
    if not _LABEL_VALUE.fullmatch(taint_value):
        raise ValueError(f"taint value {taint_value!r} is not valid (at most 63 ASCII letters, digits, '-', '_' or '.')")
    return value


GPU_TAINT = "sku=gpu:NoSchedule"
FPGA_TAINT = "sku=fpga:NoSchedule"
ACCELERATOR_LABEL = "aks-inference/accelerator"


def toleration_for(taint: str) -> dict:
    """The pod toleration matching a node taint written `key=value:Effect` (the form `_taint` accepts)."""
    key, rest = taint.split("=", 1)
    value, effect = rest.split(":")
    return {"key": key, "operator": "Equal", "value": value, "effect": effect}


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
    # With public access off: the dedicated subnet (inside network.vnetCidr) of the registry's private endpoint.
    private_endpoint_subnet_cidr: Cidr | None = None


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
    """One model service: a v1 service folder plus deployment overrides in v1 keys (see contract/v1_files.py).

    With `versions` it is an endpoint (v1's AksEndpoint): rules and semantics in contract/endpoints.py."""

    name: str
    path: str
    model_dir: str = "model"
    deployment: dict[str, Any] = Field(default_factory=dict)
    key_rotation: KeyRotation = Field(default_factory=KeyRotation)
    versions: list[EndpointVersion] = Field(default_factory=list)
    rollout: RolloutPolicy | None = None

    @property
    def folder(self) -> Path:
        return PROJECT_ROOT / self.path

    def version_folder(self, version: EndpointVersion) -> Path:
        """A version's service folder: its own `path` (resolved like `path`), else the entry's."""
        return PROJECT_ROOT / version.path if version.path else self.folder


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

    # None: internal for DevTest (plain HTTP keys never cross the internet), public otherwise.
    load_balancer: Literal["public", "internal"] | None = None
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
    def router_load_balancer(self) -> Literal["public", "internal"]:
        """`router.loadBalancer`, or its purpose default: DevTest routers serve plain HTTP, so they stay internal."""
        return self.router.load_balancer or ("internal" if self.purpose == "DevTest" else "public")

    @property
    def routes_egress(self) -> bool:
        """Nodes reach the internet through a default route to a firewall (egress.mode firewall or external)."""
        return self.egress.mode != "loadBalancer"

    @property
    def router_service_internal(self) -> bool:
        """The router's Service gets an internal load balancer: asked for, or forced by routed egress. Behind a
        default route to a firewall a public load balancer answers through the firewall and the replies are
        dropped (asymmetric routing, https://learn.microsoft.com/azure/aks/limit-egress-traffic)."""
        return self.router_load_balancer == "internal" or self.routes_egress

    @property
    def router_dnat(self) -> bool:
        """A public router behind our Azure Firewall is published by a DNAT rule on the firewall's public IP."""
        return self.router_load_balancer == "public" and self.egress.mode == "firewall"

    @property
    def firewall_public_ip_count(self) -> int:
        """`egress.firewallPublicIps`, or its purpose default: Microsoft's production guidance, one for DevTest."""
        return self.egress.firewall_public_ips or (PRODUCTION_FIREWALL_PUBLIC_IPS if self.is_production else 1)

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
