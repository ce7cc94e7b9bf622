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

from contract import vmsizes
from contract.errors import Section

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
    """One model service: a v1 service folder plus deployment overrides in v1 keys (see contract/v1_files.py)."""

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
    def gpu_pools(self) -> list[PoolConfig]:
        return [p for p in self.pools if p.accelerator == "gpu"]


_LOCATION = re.compile(r"^[a-z][a-z0-9]{2,}$")


def _location(value: str) -> str:
    if not _LOCATION.match(value):
        raise ValueError("must be an Azure region name such as westeurope (set azure-native:location)")
    return value


# Config keys whose values never appear in messages.
SECRET_KEYS: frozenset[str] = frozenset({"tls"})
