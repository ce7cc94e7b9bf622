"""The aks-inference CrossGuard rules, importable (unlike `__main__.py`, which serves forever).

A rule learns the stack's purpose from the `aks-inference/purpose` tag (Azure resources) or
label (Kubernetes objects) the program sets, and other stack choices from what the program writes on the
objects (a policy never sees stack config): the router Deployment's `aks-inference/tls-allow-insecure`
annotation (`tls.allowInsecure`), the GPU pools' taint (`contract.stack.GPU_TAINT`) that GPU services tolerate. Thresholds live in policy config
(`--policy-pack-config`). The protected-cluster force-new rule reads the previous
`networkProfile` from its config key `previous` (`{cluster resource name: networkProfile}`),
which `review/plan.py` fills in from the previous `plans/<stack>.json`.

Workload rules look at the pod spec of every pod controller (`pod_spec`: Deployment, DaemonSet,
StatefulSet, ReplicaSet, Job, CronJob, and a bare Pod), not only at Deployments. A workload that
needs more than the rules allow is a reviewed exception in `REVIEWED_WORKLOADS`: the exact
controller, the exact privileges each container may have while it runs the reviewed image, and why.
Anything beyond the reviewed privileges fails as for any other workload.

Every description ends with `Fix: ...`, naming the stack config key (`aks-inference:<key>`) or the
file to change (tests/policies/test_hints.py checks that each key exists in the contract and each
file in the repository).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from components.replacement import IMMUTABLE, value_at
from components.router_manifests import TLS_INSECURE_ANNOTATION
from contract.kubernetes_versions import (
    COMMUNITY_SUPPORT,
    LONG_TERM_SUPPORT,
    LTS_TIER,
    days_until_end_of_support,
    end_of_support,
    minor_of,
    supported_on,
)
from contract.names import PURPOSE_TAG as PURPOSE
from contract.stack import (
    ACCELERATOR_LABEL,
    GPU_TAINT,
    PRODUCTION_FIREWALL_PUBLIC_IPS,
    PRODUCTION_PURPOSES,
)
from contract.vmsizes import retirement, vcpus
from router.discovery import ENDPOINT, ENDPOINT_LABEL, SERVICE_NAME, VERSIONS
from router.discovery import MODEL_SERVICE_LABEL as MODEL_LABEL
from router.discovery import ROUTER_APP as ROUTER_NAME

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY
CLUSTER = "azure-native:containerservice:ManagedCluster"
AGENT_POOL = "azure-native:containerservice:AgentPool"
REGISTRY = "azure-native:containerregistry:Registry"
FIREWALL_POLICY = "azure-native:network:FirewallPolicy"
RULE_GROUP = "azure-native:network:FirewallPolicyRuleCollectionGroup"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
BLOB_SERVICE = "azure-native:storage:BlobServiceProperties"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
# Storage Blob Data Owner / Contributor: data-plane writers, to be scoped to one container.
BLOB_DATA_WRITER_ROLES = ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "ba92f5b4-2d11-453d-a403-e96b0029c9fe")
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
REPLICASET = "kubernetes:apps/v1:ReplicaSet"
JOB = "kubernetes:batch/v1:Job"
CRONJOB = "kubernetes:batch/v1:CronJob"
POD = "kubernetes:core/v1:Pod"
SERVICE = "kubernetes:core/v1:Service"
K8S_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
K8S_CLUSTER_ROLE = "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole"
HPA_TYPES = ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:autoscaling/v1:HorizontalPodAutoscaler")
GPU = "nvidia.com/gpu"
# The taint AKS documents for a system pool that runs only critical add-ons (Terraform's
# only_critical_addons_enabled sets the same); the add-ons tolerate it, workloads do not.
CRITICAL_ADDONS_ONLY = "CriticalAddonsOnly"
SOFT_DELETE_MIN_DAYS = 7

# Where each pod controller keeps its pod spec.
_TEMPLATE = ("spec", "template", "spec")
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    DEPLOYMENT: _TEMPLATE,
    DAEMONSET: _TEMPLATE,
    STATEFULSET: _TEMPLATE,
    REPLICASET: _TEMPLATE,
    JOB: _TEMPLATE,
    CRONJOB: ("spec", "jobTemplate", "spec", "template", "spec"),
    POD: ("spec",),
}
WORKLOAD_TYPES = tuple(POD_SPEC_PATHS)


def _get(props: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(props, dict) and not hasattr(props, "get"):
            return default
        props = props.get(key)
        if props is None:
            return default
    return props


def _plain(value: Any) -> Any:
    """The analyzer hands rules read-only proxies; JSON needs plain dicts and lists."""
    if isinstance(value, str):
        return value
    if hasattr(value, "items"):
        return {key: _plain(item) for key, item in value.items()}
    if hasattr(value, "__iter__"):
        return [_plain(item) for item in value]
    return value


def _purpose(props: Any) -> str | None:
    return _get(props, "tags", PURPOSE) or _get(props, "metadata", "labels", PURPOSE)


def _is_production(props: Any) -> bool:
    return _purpose(props) in PRODUCTION_PURPOSES


def _labels(props: Any) -> dict:
    return _get(props, "metadata", "labels", default={}) or {}


def _is_model(props: Any) -> bool:
    return _labels(props).get(MODEL_LABEL) == "true"


def _annotations(props: Any) -> dict:
    return _get(props, "metadata", "annotations", default={}) or {}


def pod_spec(resource_type: str, props: Any) -> Any | None:
    """The pod spec of any pod controller (or of a bare Pod); None for other types."""
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return None
    return _get(props, *path, default={}) or {}


# --- Reviewed exceptions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewedContainer:
    """What one container may do beyond the rules, and only while it runs exactly `image`."""

    image: str  # the reviewed reference: a version tag of a third-party registry, never latest
    run_as_root: bool = False
    writable_root_filesystem: bool = False


@dataclass(frozen=True)
class ReviewedWorkload:
    kind: str
    namespace: str
    name: str
    containers: dict[str, ReviewedContainer] = field(hash=False)
    host_paths: tuple[str, ...]  # hostPath volumes it may mount, exactly these paths
    why: str
    source: str


REVIEWED_WORKLOADS: tuple[ReviewedWorkload, ...] = (
    ReviewedWorkload(
        kind="DaemonSet",
        namespace="kube-system",
        name="nvidia-device-plugin",
        containers={
            "nvidia-device-plugin": ReviewedContainer(
                image="nvcr.io/nvidia/k8s-device-plugin:v0.18.0", run_as_root=True, writable_root_filesystem=True,
            ),
        },
        host_paths=("/var/lib/kubelet/device-plugins",),
        why=(
            "Advertises nvidia.com/gpu to the kubelet through the node's root-owned /var/lib/kubelet/device-plugins "
            "(it registers on kubelet.sock there and serves its own socket there), so it mounts that directory and "
            "runs as root, as NVIDIA's manifest does; that manifest does not make the root filesystem read-only "
            "(not tested read-only here). It keeps allowPrivilegeEscalation=false, drops ALL capabilities, is not "
            "privileged and shares no host namespace. The image is NVIDIA's, from nvcr.io, by version tag: no "
            "digest could be confirmed offline, so a new tag is a new review."
        ),
        source="NVIDIA/k8s-device-plugin deployments/static/nvidia-device-plugin.yml; AKS docs, use-nvidia-gpu.md (manual device plugin)",
    ),
)


def _reviewed_workload(kind: str, namespace: str, name: str) -> ReviewedWorkload | None:
    return next((r for r in REVIEWED_WORKLOADS if (r.kind, r.namespace, r.name) == (kind, namespace, name)), None)


def _reviewed_names(privilege: str) -> str:
    """'DaemonSet kube-system/nvidia-device-plugin' for the reviewed workloads with that container privilege."""
    names = [f"{r.kind} {r.namespace}/{r.name}" for r in REVIEWED_WORKLOADS
             if any(getattr(c, privilege) for c in r.containers.values())]
    return ", ".join(names) or "none"


def _reviewed_host_paths() -> str:
    return "; ".join(f"{r.kind} {r.namespace}/{r.name} {', '.join(r.host_paths)}" for r in REVIEWED_WORKLOADS if r.host_paths) or "none"


def reviewed_exceptions_table() -> str:
    """The reviewed-exception table of docs/policies.md (a test keeps the document current)."""
    lines = ["| Workload | Container | Reviewed image | May also | Why | Source |", "|---|---|---|---|---|---|"]
    for r in REVIEWED_WORKLOADS:
        for container_name, c in r.containers.items():
            may = [text for flag, text in ((c.run_as_root, "run as root"), (c.writable_root_filesystem, "write its root filesystem"))
                   if flag] + [f"mount hostPath `{path}`" for path in r.host_paths]
            lines.append(f"| {r.kind} `{r.namespace}/{r.name}` | `{container_name}` | `{c.image}` | {'; '.join(may)} | {r.why} | {r.source} |")
    return "\n".join(lines)


# --- Rule builders ---------------------------------------------------------------------------------


def _resource(name, description, level, types, check, schema=None) -> ResourceValidationPolicy:
    """A resource rule: `check(props, config)` yields violation messages for resources of `types`."""

    def validate(args, report_violation):
        if args.resource_type in types:
            for message in check(args.props, args.get_config() if schema else {}):
                report_violation(message)

    return ResourceValidationPolicy(name=name, description=description, enforcement_level=level,
                                    validate=validate, config_schema=schema)


@dataclass(frozen=True)
class Workload:
    """A pod controller as a workload rule sees it: its identity, its pod spec, its containers."""

    kind: str
    namespace: str
    name: str
    props: Any
    pod: Any

    @property
    def containers(self) -> list:
        return [c for key in ("containers", "initContainers", "ephemeralContainers") for c in self.pod.get(key) or []]

    @property
    def reviewed(self) -> ReviewedWorkload | None:
        return _reviewed_workload(self.kind, self.namespace, self.name)

    def reviewed_container(self, container: Any) -> ReviewedContainer | None:
        """The container's reviewed privileges, if it is a reviewed container running the reviewed image."""
        reviewed = self.reviewed
        entry = reviewed.containers.get(container.get("name")) if reviewed else None
        return entry if entry is not None and container.get("image") == entry.image else None


def _workload_rule(name, description, level, check: Callable[[Workload, Mapping], Iterable[str]], schema=None) -> ResourceValidationPolicy:
    """A rule over the pod spec of every pod controller: `check(workload, config)` yields messages."""

    def validate(args, report_violation):
        pod = pod_spec(args.resource_type, args.props)
        if pod is None:
            return
        workload = Workload(kind=args.resource_type.rsplit(":", 1)[1],
                            namespace=_get(args.props, "metadata", "namespace") or "default",
                            name=_get(args.props, "metadata", "name") or args.name, props=args.props, pod=pod)
        for message in check(workload, args.get_config() if schema else {}):
            report_violation(message)

    return ResourceValidationPolicy(name=name, description=description, enforcement_level=level,
                                    validate=validate, config_schema=schema)


def _per_container(containers: Iterable, check: Callable[[Any], Iterable[str]]) -> Iterator[str]:
    """`container <name> <problem>` for every problem `check(container)` finds: the one shape of the workload rules."""
    for c in containers:
        for problem in check(c):
            yield f"container {c.get('name')} {problem}"


def _schema(**properties: dict) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties)


# --- AKS ---------------------------------------------------------------------------------------

def _rbac(p, _):
    if p.get("enableRBAC") is not True:
        yield "enableRBAC is not true"


def _local_accounts(p, _):
    if _is_production(p) and p.get("disableLocalAccounts") is not True:
        yield "production cluster keeps local accounts (disableLocalAccounts is not true)"


def _private_or_ranges(p, _):
    api = p.get("apiServerAccessProfile") or {}
    ranges = api.get("authorizedIPRanges") or []
    if _is_production(p) and not api.get("enablePrivateCluster") and not ranges:
        yield "production API server is public with no authorized IP ranges"
    elif ranges and _admits_everyone(ranges):
        yield f"authorized IP ranges {ranges} admit every IPv4 address, which restricts nothing"


def _admits_everyone(ranges: list[str]) -> bool:
    try:
        networks = [ipaddress.IPv4Network(r, strict=False) for r in ranges]
    except ValueError:
        return False  # not IPv4 CIDRs: Azure refuses them before this matters
    return list(ipaddress.collapse_addresses(networks)) == [ipaddress.IPv4Network("0.0.0.0/0")]


def _defender(p, _):
    if _is_production(p) and not _get(p, "securityProfile", "defender", "securityMonitoring", "enabled"):
        yield "Microsoft Defender for Containers is off"


def _network_policy(p, _):
    if not _get(p, "networkProfile", "networkPolicy"):
        yield "networkProfile.networkPolicy is not set: NetworkPolicies would be ignored"


def _container_insights(p, _):
    if not _get(p, "addonProfiles", "omsagent", "enabled"):
        yield "the omsagent (Container Insights) add-on is off"


def _azure_policy(p, _):
    addons = {str(key).lower(): value for key, value in (p.get("addonProfiles") or {}).items()}
    if not _get(addons, "azurepolicy", "enabled"):
        yield "the Azure Policy add-on (addonProfiles.azurepolicy) is off"


def _run_command(p, _):
    if _get(p, "apiServerAccessProfile", "disableRunCommand") is not True:
        yield "run command (az aks command invoke) is enabled: apiServerAccessProfile.disableRunCommand is not true"


def _image_cleaner(p, _):
    if _get(p, "securityProfile", "imageCleaner", "enabled") is not True:
        yield "Image Cleaner is off (securityProfile.imageCleaner.enabled is not true)"


def _kubenet(p, _):
    if _get(p, "networkProfile", "networkPlugin") == "kubenet":
        yield "kubenet retires on 2028-03-31"


def _pool_sizes(p):
    if "agentPoolProfiles" in p:
        return [(pool.get("name"), pool) for pool in p.get("agentPoolProfiles") or []]
    return [(p.get("agentPoolName") or "pool", p)]


def _retired_sizes(p, _):
    for name, pool in _pool_sizes(p):
        retired = retirement(pool.get("vmSize") or "")
        if retired:
            yield f"pool {name}: {pool['vmSize']} retired on {retired.retired_on}; use {retired.successor}"


def _encryption_at_host(p, _):
    for name, pool in _pool_sizes(p):
        if pool.get("enableEncryptionAtHost") is not True:
            yield f"pool {name}: encryption at host is off (enableEncryptionAtHost)"


def _devtest_vcpus(p, config):
    limit = config.get("maxVcpus", 12)
    if _purpose(p) != "DevTest":
        return
    total = sum((vcpus(pool.get("vmSize") or "") or 0) * int(pool.get("count") or 0) for _, pool in _pool_sizes(p))
    if total >= limit:
        yield f"DevTest cluster has {total} vCPUs (limit {limit})"


def _reserves_critical_addons(pool: Any) -> bool:
    return any(str(t).split("=", 1)[0] == CRITICAL_ADDONS_ONLY and str(t).endswith((":NoSchedule", ":NoExecute"))
               for t in pool.get("nodeTaints") or [])


def _system_pool_reserved(args, report_violation):
    """As soon as a cluster has a user pool without taints, workloads can run there: the system pool must
    then carry CriticalAddonsOnly, or they land next to CoreDNS, konnectivity and metrics-server."""
    clusters = [r for r in args.resources if r.resource_type == CLUSTER]
    pools = [r for r in args.resources if r.resource_type == AGENT_POOL]
    for cluster in clusters:
        own = [p for p in pools if len(clusters) == 1 or cluster.urn in {d.urn for d in p.dependencies}
               or p.props.get("resourceName") == cluster.props.get("name")]
        profiles = {pool.get("name"): pool for pool in cluster.props.get("agentPoolProfiles") or []}
        profiles.update({p.props.get("agentPoolName") or p.name: p.props for p in own})
        general = sorted(str(name) for name, pool in profiles.items() if pool.get("mode") != "System" and not pool.get("nodeTaints"))
        if not general:
            continue  # the system pool is the only place workloads can run
        for name, pool in sorted(profiles.items(), key=lambda item: str(item[0])):
            if pool.get("mode") == "System" and not _reserves_critical_addons(pool):
                report_violation(f"system pool {name} also takes workloads although user pool(s) {', '.join(general)} can: "
                                 f"taint it {CRITICAL_ADDONS_ONLY}=true:NoSchedule", cluster.urn)


def _protect_production(args, report_violation):
    if args.resource_type in (CLUSTER, REGISTRY) and _is_production(args.props) and not args.opts.protect:
        report_violation(f"{args.name} is a production resource without `protect`")


def _force_new(args, report_violation):
    """Config `previous`: {resource name: {table path: previous value}} (components/replacement.py), filled by the
    plan for protected clusters and their pools; a changed value at a path with a recipe is a rebuild."""
    if args.resource_type not in (CLUSTER, AGENT_POOL) or (args.resource_type == CLUSTER and not args.opts.protect):
        return
    previous = (args.get_config().get("previous") or {}).get(args.name)
    if previous is None:
        return
    for entry in IMMUTABLE[args.resource_type]:
        if entry.recipe and entry.path in previous:
            before, after = previous[entry.path], value_at(_plain(args.props), entry.path)
            if before != after:
                effect = "replaces" if entry.replaces else "is rejected by AKS on"
                report_violation(f"{entry.path} {before!r} -> {after!r} {effect} the protected cluster; instead: {entry.recipe}")


# --- ACR, storage and firewall ---------------------------------------------------------------------

def _acr_admin(p, _):
    if p.get("adminUserEnabled"):
        yield "the ACR admin user is enabled"


def _acr_public(p, _):
    if _is_production(p) and p.get("publicNetworkAccess") != "Disabled":
        yield "production registry allows public network access"


def _storage_locked_down(p, _):
    wanted = {"minimumTlsVersion": "TLS1_2", "enableHttpsTrafficOnly": True, "allowBlobPublicAccess": False, "allowSharedKeyAccess": False}
    for key, value in wanted.items():
        if p.get(key) != value:
            yield f"{key} is {p.get(key)!r}, not {value!r}"


def _storage_network(p, _):
    if p.get("publicNetworkAccess") != "Disabled" and _get(p, "networkRuleSet", "defaultAction") != "Deny":
        yield "the account's public endpoint admits every network (no networkRuleSet defaultAction Deny, publicNetworkAccess not Disabled)"


def _soft_delete(args, report_violation):
    """Every storage account needs blob and container soft delete (a BlobServiceProperties resource)."""
    services = [r for r in args.resources if r.resource_type == BLOB_SERVICE]
    for account in (r for r in args.resources if r.resource_type == STORAGE_ACCOUNT):
        mine = [s for s in services if account.urn in {d.urn for d in s.dependencies}
                or (s.props.get("accountName") is not None and s.props.get("accountName") == account.props.get("name"))]
        if not mine:
            report_violation(f"storage account {account.props.get('name') or account.name} has no BlobServiceProperties: "
                             "deleted blobs and containers cannot be recovered", account.urn)
        for service in mine:
            for key in ("deleteRetentionPolicy", "containerDeleteRetentionPolicy"):
                policy = service.props.get(key) or {}
                days = int(policy.get("days") or 0)
                if policy.get("enabled") is not True or days < SOFT_DELETE_MIN_DAYS:
                    report_violation(f"{key} is {_plain(policy) or 'unset'}: needs enabled with at least {SOFT_DELETE_MIN_DAYS} days",
                                     service.urn)


def _blob_writer_scope(p, _):
    role, scope = p.get("roleDefinitionId"), p.get("scope")
    if not isinstance(role, str) or not role.endswith(BLOB_DATA_WRITER_ROLES) or not isinstance(scope, str):
        return  # not a blob writer, or the scope is unknown until the container exists (preview)
    if "/blobServices/default/containers/" not in scope:
        yield f"blob data write access is granted on {scope}, not on one container"


def _threat_intel(p, _):
    if p.get("threatIntelMode") != "Deny":
        yield f"threatIntelMode is {p.get('threatIntelMode')!r}, not 'Deny'"


def _idps(p, _):
    if _get(p, "sku", "tier") != "Premium" or _get(p, "intrusionDetection", "mode") != "Deny":
        yield (f"intrusion detection (IDPS) is not in Deny mode (sku tier {_get(p, 'sku', 'tier')!r}, "
               f"intrusionDetection.mode {_get(p, 'intrusionDetection', 'mode')!r})")


def _udr_covered(args, report_violation):
    """UDR egress needs firewall allow rules, or the nodes cannot reach what the platform needs.

    Config `allowlist`: the destinations of the platform's egress allowlist (the plan passes the
    program's `egressAllowlist` output), each of which must appear in a rule collection."""
    clusters = [r for r in args.resources if r.resource_type == CLUSTER]
    udr = [c for c in clusters if _get(c.props, "networkProfile", "outboundType") == "userDefinedRouting"]
    if not udr or not any(r.resource_type == "azure-native:network:AzureFirewall" for r in args.resources):
        return  # no firewall of ours (egress.mode external): the network team's firewall applies the exported allowlist
    allowed = {json.dumps(_plain(r.props.get("ruleCollections")), sort_keys=True)
               for r in args.resources if r.resource_type == RULE_GROUP}
    text = " ".join(allowed)
    missing = [entry for entry in args.get_config().get("allowlist") or [] if json.dumps(entry) not in text]
    if not allowed:
        report_violation("outboundType userDefinedRouting but no firewall rule collection group", udr[0].urn)
    for entry in missing:
        report_violation(f"egress allowlist entry {entry} is not in any firewall rule", udr[0].urn)


# --- Kubernetes RBAC --------------------------------------------------------------------------------

def _rbac_wildcards(p, _):
    for index, rule in enumerate(p.get("rules") or []):
        for key in ("verbs", "resources", "apiGroups"):
            wild = [str(value) for value in rule.get(key) or [] if "*" in str(value)]
            if wild:
                yield f"rule {index} grants wildcard {key} {wild}"


def _secret_reads(p, _):
    for index, rule in enumerate(p.get("rules") or []):
        groups, resources = list(rule.get("apiGroups") or []), list(rule.get("resources") or [])
        if not ({"", "*"} & set(groups) and {"secrets", "*"} & set(resources)):
            continue
        verbs = set(rule.get("verbs") or [])
        bulk = sorted(verbs & {"list", "watch", "*"})
        if bulk:
            yield f"rule {index} grants {bulk} on secrets: that reads every Secret in scope"
        elif "get" in verbs and not rule.get("resourceNames"):
            yield f"rule {index} grants get on every Secret (no resourceNames)"


# --- Kubernetes workloads ---------------------------------------------------------------------------

def _hpa_on_model(args, report_violation):
    models = {(_get(r.props, "metadata", "namespace") or "default", _get(r.props, "metadata", "name")): r
              for r in args.resources if r.resource_type == DEPLOYMENT and _is_model(r.props)}
    for r in args.resources:
        if r.resource_type in HPA_TYPES:
            ref = _get(r.props, "spec", "scaleTargetRef", default={})
            key = (_get(r.props, "metadata", "namespace") or "default", ref.get("name"))
            if ref.get("kind") == "Deployment" and key in models:
                report_violation(f"HPA {_get(r.props, 'metadata', 'name')} targets model Deployment {key[1]}",
                                 models[key].urn)


def _model_auth(p, _):
    if _is_model(p) and _is_production(p) and _annotations(p).get("aks-inference/auth") not in ("key", "token"):
        yield f"model service {_get(p, 'metadata', 'name')} has no key or token auth"


# --- Versioned endpoints (contract/endpoints.py; the objects: components/model_manifests.py) -------------

def _is_endpoint(props: Any) -> bool:
    return _labels(props).get(ENDPOINT_LABEL) == "true"


def _endpoint_versions(p) -> list[dict] | None:
    """The VERSIONS annotation of an endpoint Service; None when it is not a readable list of objects."""
    try:
        versions = json.loads(_annotations(p).get(VERSIONS) or "null")
    except ValueError:
        return None
    return versions if isinstance(versions, list) and all(isinstance(v, dict) for v in versions) else None


def _share(version: dict) -> int:
    share = version.get("trafficPercentile")
    return share if isinstance(share, int) and not isinstance(share, bool) else 0


def _endpoint_control(p, _):
    if not (_is_endpoint(p) and _is_production(p)):
        return
    versions = _endpoint_versions(p)
    if versions is None:
        yield f"endpoint {_get(p, 'metadata', 'name')} has no readable {VERSIONS} annotation"
    elif not any(v.get("versionType") == "control" for v in versions):
        yield f"production endpoint {_get(p, 'metadata', 'name')} has no control version (versions: {', '.join(str(v.get('name')) for v in versions)})"


def _treatment_takes_all(p, _):
    """All client traffic on treatments while the default answers none (its share is what the others leave)."""
    versions = _endpoint_versions(p) if _is_endpoint(p) else None
    if not versions:
        return
    defaults = [v for v in versions if v.get("isDefault") is True]
    left = 100 - sum(_share(v) for v in versions if v.get("isDefault") is not True)
    treatments = [v for v in versions if v.get("isDefault") is not True and v.get("versionType") != "control" and _share(v) > 0]
    if left <= 0 and sum(_share(v) for v in treatments) >= 100:
        default = f"the default {defaults[0].get('name')} answers" if defaults else "there is no default version to answer"
        yield (f"endpoint {_get(p, 'metadata', 'name')}: treatment(s) {', '.join(str(v.get('name')) for v in treatments)} take 100 % "
               f"of the traffic while {default} none")


def _versions_have_endpoints(args, report_violation):
    """Every version Service (annotation ENDPOINT) names an endpoint Service of its namespace that lists it."""
    endpoints = {}
    for r in args.resources:
        if r.resource_type == SERVICE and _is_endpoint(r.props):
            key = (_get(r.props, "metadata", "namespace") or "default", _annotations(r.props).get(SERVICE_NAME))
            endpoints[key] = {v.get("name") for v in _endpoint_versions(r.props) or []}
    for r in args.resources:
        named = _annotations(r.props).get(ENDPOINT) if r.resource_type == SERVICE else None
        if named is None:
            continue
        namespace = _get(r.props, "metadata", "namespace") or "default"
        version = _annotations(r.props).get(SERVICE_NAME)
        listed = endpoints.get((namespace, named))
        if listed is None:
            report_violation(f"version {version} names endpoint {named}, which has no endpoint Service in namespace {namespace}", r.urn)
        elif version not in listed:
            report_violation(f"version {version} names endpoint {named}, whose {VERSIONS} annotation does not list it", r.urn)


def _router_tls(args, report_violation):
    routers = [r for r in args.resources if r.resource_type == DEPLOYMENT
               and _labels(r.props).get("app.kubernetes.io/name") == ROUTER_NAME]
    tls_secrets = {_get(r.props, "metadata", "name") for r in args.resources
                   if r.resource_type == "kubernetes:core/v1:Secret" and r.props.get("type") == "kubernetes.io/tls"}
    production = any(_is_production(r.props) for r in args.resources if r.resource_type == CLUSTER)
    for router in routers if production else []:
        if _annotations(router.props).get(TLS_INSECURE_ANNOTATION) == "true":
            continue  # the stack chose plain HTTP explicitly (tls.allowInsecure: true)
        volumes = _get(router.props, "spec", "template", "spec", "volumes", default=[])
        if not any(_get(v, "secret", "secretName") in tls_secrets for v in volumes):
            report_violation("the production router mounts no kubernetes.io/tls Secret", router.urn)


_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_HASH_TAG = re.compile(r":[0-9a-f]{12,64}$")


def _built_here(image: str, registry: str | None) -> bool:
    """An image the platform builds and pushes: from the stack's ACR (config `registry`), or any ACR."""
    return image.startswith(registry + "/") if registry else ".azurecr.io/" in image


def _images(w: Workload, config):
    registry = config.get("registry")

    def check(c):
        if w.reviewed_container(c) is not None:
            return  # the exact third-party reference that was reviewed
        image = c.get("image") or ""
        if image.endswith(":latest") or not (_DIGEST.search(image) or _HASH_TAG.search(image)):
            yield f"image {image} is not pinned by digest or content-hash tag"
        if registry and not image.startswith(registry + "/"):
            yield f"image {image} is not from {registry}"
        elif not registry and ".azurecr.io/" not in image:
            yield f"image {image} is not from the stack's ACR"

    return _per_container(w.containers, check)


def _platform_digests(w: Workload, config):
    registry = config.get("registry")

    def check(c):
        image = c.get("image") or ""
        if _built_here(image, registry) and not _DIGEST.search(image):
            yield f"image {image} is built by the platform but not pinned by digest (@sha256:...)"

    return _per_container(w.containers, check)


def _resources_and_probes(w: Workload, _):
    def check(c):
        res = c.get("resources") or {}
        for missing in [k for k in ("requests", "limits") if not res.get(k)] + \
                       [k for k in ("readinessProbe", "livenessProbe") if not c.get(k)]:
            yield f"has no {missing}"

    return _per_container(w.pod.get("containers") or [], check) if _is_model(w.props) else ()


def _security(w: Workload, _):
    pod_non_root = _get(w.pod, "securityContext", "runAsNonRoot")

    def check(c):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            yield "is privileged"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield "allows privilege escalation"
        non_root = sc.get("runAsNonRoot") or (pod_non_root and sc.get("runAsNonRoot") is not False)
        reviewed = w.reviewed_container(c)
        if not non_root and not (reviewed and reviewed.run_as_root):
            yield "may run as root"

    return _per_container(w.containers, check)


def _capabilities(w: Workload, _):
    def check(c):
        caps = _get(c, "securityContext", "capabilities", default={}) or {}
        if "ALL" not in [str(cap).upper() for cap in caps.get("drop") or []]:
            yield "does not drop ALL capabilities"
        if caps.get("add"):
            yield f"adds capabilities {list(caps.get('add'))}"

    return _per_container(w.containers, check)


def _read_only_root(w: Workload, _):
    def check(c):
        reviewed = w.reviewed_container(c)
        if _get(c, "securityContext", "readOnlyRootFilesystem") is not True and not (reviewed and reviewed.writable_root_filesystem):
            yield "can write its root filesystem (readOnlyRootFilesystem is not true)"

    return _per_container(w.containers, check)


def _host_namespaces(w: Workload, _):
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if w.pod.get(key):
            yield f"the pod shares the node's namespace ({key}: true)"


def _host_paths(w: Workload, _):
    allowed = w.reviewed.host_paths if w.reviewed else ()
    for volume in w.pod.get("volumes") or []:
        path = _get(volume, "hostPath", "path")
        if path is not None and path not in allowed:
            yield f"volume {volume.get('name')} mounts the node's {path}"


def _tolerates(toleration: Any, taint: str) -> bool:
    """Kubernetes' matching rule (https://kubernetes.io/docs/concepts/scheduling-eviction/taint-and-toleration/):
    an empty effect matches every effect; an empty key with Exists matches every taint; Exists matches any
    value of the key; Equal (the default operator) matches the value."""
    key, rest = taint.split("=", 1)
    value, effect = rest.split(":")
    operator = toleration.get("operator") or "Equal"
    if toleration.get("effect") and toleration.get("effect") != effect:
        return False
    if not toleration.get("key"):
        return operator == "Exists"
    return toleration.get("key") == key and (operator == "Exists" or (operator == "Equal" and (toleration.get("value") or "") == value))


def _gpu(w: Workload, _):
    """A GPU model workload (it requests nvidia.com/gpu or selects the GPU pools' label) must tolerate the
    taint every GPU pool carries (contract.stack.GPU_TAINT, set by components/cluster_profiles.py) and
    request nvidia.com/gpu."""
    pod = w.pod
    requests_gpu = any(_get(c, "resources", "limits", GPU) for c in pod.get("containers") or [])
    selects_gpu = (pod.get("nodeSelector") or {}).get(ACCELERATOR_LABEL) == "gpu"
    if not _is_model(w.props) or not (requests_gpu or selects_gpu):
        return
    if not any(_tolerates(t, GPU_TAINT) for t in pod.get("tolerations") or []):
        yield f"GPU service does not tolerate the GPU pools' taint {GPU_TAINT}: it can never be scheduled there"
    if not requests_gpu:
        yield "GPU service requests no nvidia.com/gpu"


def _int_annotation(p, key) -> int | None:
    value = _annotations(p).get(key)
    return int(value) if value not in (None, "") else None


def _payload(p, config):
    limit = config.get("maxPayloadMb", 100)
    size = _int_annotation(p, "aks-inference/max-payload-mb")
    if _is_model(p) and size is not None and size > limit:
        yield f"payload cap {size} MB exceeds {limit} MB"


def _model_count(p, config):
    limit = config.get("maxModels", 1000)
    count = _int_annotation(p, "aks-inference/model-count")
    if _is_model(p) and count is not None and count > limit:
        yield f"{count} models in one service (limit {limit})"


def _replicas(p, _):
    raw = _annotations(p).get("aks-inference/autoscale")
    auto = json.loads(raw) if raw else {}
    if auto.get("min") is not None and auto.get("max") is not None and auto["min"] > auto["max"]:
        yield f"autoscale min {auto['min']} > max {auto['max']}"
    spec = p.get("spec") or {}
    if "minReplicas" in spec and spec["minReplicas"] > spec.get("maxReplicas", spec["minReplicas"]):
        yield f"minReplicas {spec['minReplicas']} > maxReplicas {spec['maxReplicas']}"


def _scoring_timeout(w: Workload, _):
    def check(c):
        env = {e.get("name"): e.get("value") for e in c.get("env") or []}
        if "SCORING_TIMEOUT_MS" in env and "WORKER_TIMEOUT" in env:
            if int(env["SCORING_TIMEOUT_MS"]) >= int(env["WORKER_TIMEOUT"]) * 1000:
                yield f"has a scoring timeout of {env['SCORING_TIMEOUT_MS']} ms, not below its worker timeout of {env['WORKER_TIMEOUT']} s"

    return _per_container(w.pod.get("containers") or [], check)


_LIMIT_SCHEMA = {"type": "integer", "minimum": 1}
_REGISTRY_SCHEMA = {"type": "string"}
_CONTROLLERS = "Deployments, DaemonSets, StatefulSets, ReplicaSets, Jobs, CronJobs and Pods"

ALL = [
    # --- AKS cluster
    _resource("aks-rbac-enabled", "AKS must have Kubernetes RBAC (enableRBAC=true; turning it on replaces the cluster). "
              "Fix: keep enable_rbac=True in `components/cluster_profiles.py`.",
              MANDATORY, (CLUSTER,), _rbac),
    _resource("aks-local-accounts-disabled", "FastProd/DenseProd clusters must disable local accounts and use Entra ID. "
              "Fix: set `aks-inference:cluster.disableLocalAccounts` to true with `aks-inference:cluster.adminGroupObjectIds`.",
              MANDATORY, (CLUSTER,), _local_accounts),
    _resource("aks-api-server-restricted", "FastProd/DenseProd API servers must be private or limited by authorized IP ranges that do not admit every address. "
              "Fix: set `aks-inference:cluster.privateCluster` or `aks-inference:cluster.authorizedIpRanges`.",
              MANDATORY, (CLUSTER,), _private_or_ranges),
    _resource("aks-defender-enabled", "FastProd/DenseProd clusters need Defender for Containers (securityProfile.defender) reporting to the Log Analytics workspace. "
              "Fix: set `aks-inference:defender` to true.",
              MANDATORY, (CLUSTER,), _defender),
    ResourceValidationPolicy(name="production-resources-protected",
                             description="FastProd/DenseProd clusters and registries must set the `protect` resource option. "
                                         "Fix: keep protect=config.is_production in `components/cluster.py` and `components/registry.py`.",
                             enforcement_level=MANDATORY, validate=_protect_production),
    ResourceValidationPolicy(name="protected-cluster-force-new-change",
                             description="A change that rebuilds a protected cluster or one of its pools, or that AKS rejects in place "
                                         "(force-new networkProfile fields, dnsPrefix, the system pool's VM size, a pool's maxPods/osSku/subnet/zones; "
                                         "the table in components/replacement.py). "
                                         "Fix: revert the `aks-inference:network` or `aks-inference:cluster` change, or follow the migration recipe the plan prints.",
                             enforcement_level=MANDATORY, validate=_force_new,
                             config_schema=_schema(previous={"type": "object"})),
    _resource("aks-network-policy-enabled", "networkProfile.networkPolicy must be set (cilium, calico or azure) so NetworkPolicies are enforced. "
              "Fix: the program picks it from `aks-inference:network.plugin` in `components/cluster_profiles.py`; keep it set.",
              MANDATORY, (CLUSTER,), _network_policy),
    _resource("aks-container-insights-enabled", "The omsagent (Container Insights) add-on must send to the stack's Log Analytics workspace. "
              "Fix: set `aks-inference:monitoring.containerInsights` to true.",
              MANDATORY, (CLUSTER,), _container_insights),
    _resource("aks-azure-policy-enabled", "The Azure Policy add-on (addonProfiles.azurepolicy, checkov CKV_AZURE_116) must be on, so Azure Policy for Kubernetes assignments are enforced in the cluster. "
              "Fix: keep the azurepolicy add-on in addon_profiles in `components/cluster_profiles.py`.",
              MANDATORY, (CLUSTER,), _azure_policy),
    _resource("aks-run-command-disabled", "Run command (az aks command invoke) must be off (apiServerAccessProfile.disableRunCommand): it reaches the API server through ARM, around private endpoints and authorized ranges. "
              "Fix: keep disable_run_command=True in api_server_access_profile in `components/cluster_profiles.py`.",
              MANDATORY, (CLUSTER,), _run_command),
    _resource("aks-image-cleaner-enabled", "Image Cleaner (securityProfile.imageCleaner) must remove unused, vulnerable images from the nodes. "
              "Fix: keep image_cleaner in security_profile in `components/cluster_profiles.py`.",
              MANDATORY, (CLUSTER,), _image_cleaner),
    StackValidationPolicy(name="aks-system-pool-critical-addons-only",
                          description="Once a cluster has a user pool without taints, its system pool must carry CriticalAddonsOnly=true:NoSchedule (checkov CKV_AZURE_232), so workloads cannot starve CoreDNS and the add-ons. "
                                      "Fix: the program taints the system pool whenever `aks-inference:pools` has an entry with accelerator none and no taints (`components/cluster_profiles.py`).",
                          enforcement_level=MANDATORY, validate=_system_pool_reserved),
    _resource("aks-encryption-at-host", "Node pools should encrypt temp disks, caches and disk traffic at the VM host (enableEncryptionAtHost, checkov CKV_AZURE_227). Advisory: the subscription must first register the Microsoft.Compute EncryptionAtHost feature, or pool creation fails. "
              "Fix: after `az feature register --namespace Microsoft.Compute --name EncryptionAtHost`, set enable_encryption_at_host in system_pool_profile and pool_profile in `components/cluster_profiles.py`.",
              ADVISORY, (CLUSTER, AGENT_POOL), _encryption_at_host),
    _resource("aks-kubenet-retiring", "kubenet retires on 2028-03-31. "
              "Fix: set `aks-inference:network.plugin` to azureOverlay, in a new cluster.",
              ADVISORY, (CLUSTER,), _kubenet),
    _resource("aks-no-retired-vm-sizes", "A node pool must not use a retired VM size. "
              "Fix: move `aks-inference:pools[].vmSize` or `aks-inference:cluster.systemPool.vmSize` to the named successor.",
              MANDATORY, (CLUSTER, AGENT_POOL), _retired_sizes),
    _resource("devtest-cluster-size", "DevTest clusters should stay under the vCPU limit (config maxVcpus, default 12). "
              "Fix: shrink `aks-inference:cluster.systemPool.count`, `aks-inference:cluster.systemPool.vmSize` or `aks-inference:pools`.",
              ADVISORY, (CLUSTER, AGENT_POOL), _devtest_vcpus, _schema(maxVcpus=_LIMIT_SCHEMA)),
    # --- ACR, storage, firewall
    _resource("acr-admin-disabled", "The ACR admin user must be off (adminUserEnabled=false); nodes pull with the kubelet identity. "
              "Fix: keep admin_user_enabled=False in `components/registry.py`.",
              MANDATORY, (REGISTRY,), _acr_admin),
    # Advisory: turning public access off needs a subnet for the private endpoint (registry.privateEndpointSubnetCidr),
    # which the shipped prod stack does not set. Raise it per stack with --policy-pack-config once it does.
    _resource("acr-no-public-access-production", "FastProd/DenseProd registries should set publicNetworkAccess=Disabled behind a private endpoint. Advisory: the endpoint needs a subnet range of its own. "
              "Fix: set `aks-inference:registry.privateEndpointSubnetCidr` and `aks-inference:registry.publicNetworkAccess` to false; the program then creates the private endpoint and its privatelink.azurecr.io zone.",
              ADVISORY, (REGISTRY,), _acr_public),
    _resource("storage-account-locked-down", "Storage accounts must use TLS 1.2, HTTPS only, no public blob access and no shared keys (identities only). "
              "Fix: keep the account settings in `components/modeldata.py`.",
              MANDATORY, (STORAGE_ACCOUNT,), _storage_locked_down),
    _resource("storage-account-network-restricted", "Storage accounts should refuse the public endpoint by default (networkRuleSet defaultAction Deny, or publicNetworkAccess Disabled). Advisory: model pods reach the model-data account over its public endpoint with workload identity, so a default-deny rule breaks collection until a private endpoint exists. "
              "Fix: add a blob private endpoint, then set network_rule_set in `components/modeldata.py`.",
              ADVISORY, (STORAGE_ACCOUNT,), _storage_network),
    StackValidationPolicy(name="storage-blob-soft-delete",
                          description=f"Every storage account needs blob and container soft delete (a BlobServiceProperties with deleteRetentionPolicy and containerDeleteRetentionPolicy enabled, at least {SOFT_DELETE_MIN_DAYS} days), so a mistaken delete can be undone. "
                                      "Fix: keep the BlobServiceProperties in `components/modeldata.py`.",
                          enforcement_level=MANDATORY, validate=_soft_delete),
    _resource("blob-writers-scoped-to-a-container", "Blob Data Contributor/Owner must be granted on one container (…/blobServices/default/containers/<name>), not on an account or group. "
              "Fix: scope the role assignment to the container, as `components/modeldata.py` does.",
              MANDATORY, (ROLE_ASSIGNMENT,), _blob_writer_scope),
    _resource("firewall-threat-intel-deny", "The firewall policy must deny traffic to known-malicious addresses (threatIntelMode Deny). "
              "Fix: set `aks-inference:egress.threatIntelMode` to Deny.",
              MANDATORY, (FIREWALL_POLICY,), _threat_intel),
    _resource("firewall-idps-deny", "The firewall policy should run intrusion detection and prevention in Deny mode (checkov CKV_AZURE_220). Advisory: IDPS needs the Premium firewall SKU, which costs several times Standard. "
              "Fix: set sku tier Premium and intrusion_detection mode Deny on the FirewallPolicy and the AzureFirewall in `components/firewall.py`.",
              ADVISORY, (FIREWALL_POLICY,), _idps),
    StackValidationPolicy(name="udr-egress-allowlist-covered",
                          description="With userDefinedRouting egress, the firewall rules must cover the platform's egress allowlist. "
                                      "Fix: add the missing destinations to `aks-inference:egress.extraFqdns`, or to `components/egress.py` when the platform needs them.",
                          enforcement_level=MANDATORY, validate=_udr_covered,
                          config_schema=_schema(allowlist={"type": "array", "items": {"type": "string"}})),
    # --- Kubernetes RBAC
    _resource("rbac-no-wildcards", "Roles and ClusterRoles must not grant wildcard verbs, resources or API groups (*). "
              "Fix: name the verbs and resources in the rules, as `components/router_manifests.py` does.",
              MANDATORY, (K8S_ROLE, K8S_CLUSTER_ROLE), _rbac_wildcards),
    _resource("rbac-secrets-by-name", "Roles and ClusterRoles may read Secrets only with get on named Secrets (resourceNames); list or watch on secrets reads every Secret in scope. "
              "Fix: grant get with resourceNames on the Secrets the workload needs, as `components/router_manifests.py` does.",
              MANDATORY, (K8S_ROLE, K8S_CLUSTER_ROLE), _secret_reads),
    # --- Kubernetes workloads
    StackValidationPolicy(name="no-hpa-on-model-deployments",
                          description="Model Deployments are scaled by the router's autoscaler; only the router may have a HorizontalPodAutoscaler. "
                                      "Fix: remove the HorizontalPodAutoscaler and set `aks-inference:models[].deployment.autoScaler` instead.",
                          enforcement_level=MANDATORY, validate=_hpa_on_model),
    _resource("model-auth-production", "Model services in FastProd/DenseProd must use key or token auth. "
              "Fix: leave `aks-inference:models[].deployment.authEnabled` unset or true, or set `aks-inference:models[].deployment.tokenAuthEnabled`.",
              MANDATORY, (SERVICE,), _model_auth),
    _resource("endpoint-control-version-production", "A FastProd/DenseProd versioned endpoint must have a control version (versionType control), "
              "the baseline its treatments are compared with and a rollback returns to. "
              "Fix: set `aks-inference:models[].versions[].versionType` to control on one version (usually the default).",
              MANDATORY, (SERVICE,), _endpoint_control),
    _resource("endpoint-treatment-not-all-traffic", "A versioned endpoint must not send 100 % of its traffic to treatment versions while its default version "
              f"answers none (the endpoint Service's {VERSIONS} annotation): nothing would remain to compare with or fall back on. "
              "Fix: lower the treatment's `aks-inference:models[].versions[].trafficPercentile`, or promote it by making it the default with `aks-inference:models[].versions[].isDefault`.",
              MANDATORY, (SERVICE,), _treatment_takes_all),
    StackValidationPolicy(name="endpoint-versions-have-endpoints",
                          description=f"A version Service (annotation {ENDPOINT}) must name an endpoint Service of its namespace that exists in the stack and lists it in {VERSIONS}; "
                                      "otherwise the router serves it nowhere. "
                                      "Fix: declare the version under `aks-inference:models[].versions` of its endpoint, in the endpoint's namespace (`components/model_manifests.py` writes both objects).",
                          enforcement_level=MANDATORY, validate=_versions_have_endpoints),
    StackValidationPolicy(name="router-tls-production",
                          description="The router must serve TLS in FastProd/DenseProd (a kubernetes.io/tls Secret mounted by the router), "
                                      f"unless the stack serves plain HTTP explicitly (the router Deployment's {TLS_INSECURE_ANNOTATION} annotation, set from tls.allowInsecure). "
                                      "Fix: set `aks-inference:tls.certificate` and `aks-inference:tls.key` as secrets, or `aks-inference:tls.allowInsecure` to true.",
                          enforcement_level=MANDATORY, validate=_router_tls),
    _workload_rule("images-from-acr-pinned", f"Images of {_CONTROLLERS} must come from the stack's ACR (config registry) and be pinned by digest or content-hash tag, never latest. "
                   "A third-party image passes only as the exact reference of a reviewed exception (REVIEWED_WORKLOADS). "
                   "Fix: build the image through the program (`components/workloads.py`), or review the third-party image in `policies/rules.py`.",
                   MANDATORY, _images, _schema(registry=_REGISTRY_SCHEMA)),
    _workload_rule("platform-images-pinned-by-digest", f"Images the platform builds (from the stack's ACR, config registry, or any azurecr.io) in {_CONTROLLERS} must be pinned by digest (@sha256:…, checkov CKV_K8S_43), so what runs is exactly what was pushed. "
                   "Fix: reference the pushed image's repo_digest, as `components/workloads.py` and `components/router_cluster.py` do.",
                   MANDATORY, _platform_digests, _schema(registry=_REGISTRY_SCHEMA)),
    _workload_rule("model-resources-and-probes", "Every model container (any controller labelled as a model service) needs requests, limits, readiness and liveness probes. "
                   "Fix: set `aks-inference:models[].deployment.containerResourceRequirements` and `aks-inference:models[].deployment.livenessProbeRequirements`.",
                   MANDATORY, _resources_and_probes),
    _workload_rule("containers-restricted", f"Containers of {_CONTROLLERS} must not be privileged, must set allowPrivilegeEscalation=false and run as non-root. "
                   f"Reviewed exception (may run as root): {_reviewed_names('run_as_root')}. "
                   "Fix: set the securityContext in `components/model_manifests.py` or `components/router_manifests.py`, or review the workload in `policies/rules.py`.",
                   MANDATORY, _security),
    _workload_rule("containers-drop-all-capabilities", f"Containers of {_CONTROLLERS} must drop ALL Linux capabilities and add none (checkov CKV_K8S_28/37). No exception. "
                   "Fix: set securityContext.capabilities.drop [ALL] in `components/model_manifests.py`, `components/router_manifests.py` or `components/cluster_profiles.py`.",
                   MANDATORY, _capabilities),
    _workload_rule("containers-read-only-root-filesystem", f"Containers of {_CONTROLLERS} must run with a read-only root filesystem (checkov CKV_K8S_22) and write only to mounted volumes. "
                   f"Reviewed exception (may write its root filesystem): {_reviewed_names('writable_root_filesystem')}. "
                   "Fix: set readOnlyRootFilesystem and mount an emptyDir where it writes, as `components/model_manifests.py` does.",
                   MANDATORY, _read_only_root),
    _workload_rule("pods-no-host-namespaces", f"Pods of {_CONTROLLERS} must not share the node's network, PID or IPC namespace (hostNetwork, hostPID, hostIPC; checkov CKV_K8S_17/18/19). No exception. "
                   "Fix: remove hostNetwork, hostPID and hostIPC from the pod spec in `components/model_manifests.py`, `components/router_manifests.py` or `components/cluster_profiles.py`.",
                   MANDATORY, _host_namespaces),
    _workload_rule("pods-no-host-paths", f"Pods of {_CONTROLLERS} must not mount hostPath volumes. "
                   f"Reviewed exception (may mount exactly these paths): {_reviewed_host_paths()}. "
                   "Fix: use an emptyDir or a ConfigMap volume, or review the workload in `policies/rules.py`.",
                   MANDATORY, _host_paths),
    _workload_rule("gpu-services-scheduled", f"GPU model services (requesting nvidia.com/gpu or selecting {ACCELERATOR_LABEL}: gpu) must tolerate the taint "
                   f"every GPU pool carries ({GPU_TAINT}) and request nvidia.com/gpu. "
                   "Fix: set `aks-inference:models[].deployment.gpuCores` and add a pool with `aks-inference:pools[].accelerator` gpu.",
                   MANDATORY, _gpu),
    _resource("payload-cap", "A model service's payload cap (annotation aks-inference/max-payload-mb) must not exceed the limit (config maxPayloadMb, default 100 MB). "
              "Fix: lower the annotation; the router's own cap is DEFAULT_MAX_REQUEST_BYTES in `router/spec.py`.",
              MANDATORY, (SERVICE,), _payload, _schema(maxPayloadMb=_LIMIT_SCHEMA)),
    _resource("models-per-service", "At most 1,000 models per service (config maxModels). "
              "Fix: split the service into several `aks-inference:models` entries.",
              MANDATORY, (SERVICE,), _model_count, _schema(maxModels=_LIMIT_SCHEMA)),
    _resource("replicas-min-le-max", "Autoscale minimum replicas must not exceed the maximum. "
              "Fix: set `aks-inference:models[].deployment.autoScaler.minReplicas` at most `aks-inference:models[].deployment.autoScaler.maxReplicas`.",
              MANDATORY, (SERVICE, *HPA_TYPES), _replicas),
    _workload_rule("scoring-timeout-below-worker-timeout", "The scoring timeout must be below the model server's worker timeout, or workers are killed mid-request. "
                   "Fix: lower `aks-inference:models[].deployment.scoringTimeoutMs`.",
                   MANDATORY, _scoring_timeout),
]


def markdown_table() -> str:
    """The rule table of docs/policies.md (a test keeps the document current)."""
    lines = ["| Rule | Level | Kind | Config | What it checks and how to fix it |", "|---|---|---|---|---|"]
    for policy in ALL:
        kind = "stack" if isinstance(policy, StackValidationPolicy) else "resource"
        config = ", ".join(f"`{key}`" for key in sorted(policy.config_schema.properties)) if policy.config_schema else ""
        lines.append(f"| `{policy.name}` | {policy.enforcement_level.value} | {kind} | {config} | {policy.description} |")
    return "\n".join(lines)


# --- Kubernetes version support (appended: the rule table lists it last) ------------------------------

END_OF_SUPPORT_WARNING_DAYS = 60


def _version_support(p, config):
    """The cluster's minor against the AKS calendar (contract/kubernetes_versions.py) on config `today`
    (ISO date; default: the day the pack runs)."""
    version = p.get("kubernetesVersion")
    if not version:
        return
    today = date.fromisoformat(config["today"]) if config.get("today") else date.today()
    tier, plan = _get(p, "sku", "tier") or "", p.get("supportPlan") or COMMUNITY_SUPPORT
    end = end_of_support(version, tier, plan)
    if end is None:
        yield f"Kubernetes {version} is not in the AKS release calendar (contract/kubernetes_versions.py)"
        return
    days = days_until_end_of_support(version, today, tier, plan)
    support = "long-term" if (plan, tier) == (LONG_TERM_SUPPORT, LTS_TIER) else "community"
    if days <= 0:
        yield f"Kubernetes {minor_of(version)} left {support} support on {end.isoformat()}; upgrade to one of {', '.join(supported_on(today))}"
    elif days <= config.get("warnDays", END_OF_SUPPORT_WARNING_DAYS):
        yield (f"Kubernetes {minor_of(version)} leaves {support} support on {end.isoformat()}, in {days} days; "
               f"upgrade to one of {', '.join(v for v in supported_on(today) if v > minor_of(version)) or 'the next minor'}")


ALL.append(
    _resource("aks-version-end-of-support", f"The cluster's Kubernetes minor should not be within {END_OF_SUPPORT_WARNING_DAYS} days (config warnDays) of "
              "leaving the support it has on AKS (community, or long-term with Premium tier and AKSLongTermSupport), per the AKS release calendar "
              "on config today (default: the day the pack runs). Advisory: the stack's config check already refuses a version past its support. "
              "Fix: raise `aks-inference:cluster.kubernetesVersion` to a newer supported minor (an in-place upgrade, one minor at a time).",
              ADVISORY, (CLUSTER,), _version_support,
              _schema(today={"type": "string", "format": "date"}, warnDays=_LIMIT_SCHEMA))
)


# --- Azure Firewall SNAT capacity (appended: the rule table lists it last) ----------------------------

AZURE_FIREWALL = "azure-native:network:AzureFirewall"


def _firewall_public_ips(p, config):
    """Public IPs on a production firewall against Microsoft's guidance (contract/stack.py
    PRODUCTION_FIREWALL_PUBLIC_IPS: https://learn.microsoft.com/azure/aks/limit-egress-traffic)."""
    minimum = config.get("minPublicIps", PRODUCTION_FIREWALL_PUBLIC_IPS)
    count = sum(1 for c in p.get("ipConfigurations") or [] if _get(c, "publicIPAddress", "id"))
    if _is_production(p) and count < minimum:
        yield (f"the firewall has {count} public IP(s), below the {minimum} Microsoft recommends for production; "
               f"each adds 2,496 SNAT ports per firewall instance")


ALL.append(
    _resource("firewall-public-ips-production", f"FastProd/DenseProd firewalls should have at least {PRODUCTION_FIREWALL_PUBLIC_IPS} public IPs "
              "(config minPublicIps), Microsoft's production guidance against SNAT port exhaustion. Advisory: fewer is a capacity risk, not a fault. "
              f"Fix: raise `aks-inference:egress.firewallPublicIps` (or leave it unset: production stacks default to {PRODUCTION_FIREWALL_PUBLIC_IPS}).",
              ADVISORY, (AZURE_FIREWALL,), _firewall_public_ips, _schema(minPublicIps=_LIMIT_SCHEMA))
)
