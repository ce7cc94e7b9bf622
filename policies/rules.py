"""The aks-inference CrossGuard rules, importable (unlike `__main__.py`, which serves forever).

A rule learns the stack's purpose from the `aks-inference/purpose` tag (Azure resources) or
label (Kubernetes objects) the program sets. Thresholds live in policy config
(`--policy-pack-config`). The protected-cluster force-new rule reads the previous
`networkProfile` from its config key `previous` (`{cluster resource name: networkProfile}`),
which `review/plan.py` fills in from the previous `plans/<stack>.json`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from components.names import PURPOSE_TAG as PURPOSE
from components.replacement import FORCE_NEW_NETWORK_FIELDS
from contract.stack import PRODUCTION_PURPOSES
from contract.vmsizes import retirement, vcpus
from router.discovery import MODEL_SERVICE_LABEL as MODEL_LABEL
from router.discovery import ROUTER_APP as ROUTER_NAME

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY
CLUSTER = "azure-native:containerservice:ManagedCluster"
AGENT_POOL = "azure-native:containerservice:AgentPool"
REGISTRY = "azure-native:containerregistry:Registry"
FIREWALL_POLICY = "azure-native:network:FirewallPolicy"
RULE_GROUP = "azure-native:network:FirewallPolicyRuleCollectionGroup"
STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
# Storage Blob Data Owner / Contributor: data-plane writers, to be scoped to one container.
BLOB_DATA_WRITER_ROLES = ("b7e6dc6d-f1e8-4753-8033-0f276bb0955b", "ba92f5b4-2d11-453d-a403-e96b0029c9fe")
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
HPA_TYPES = ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "kubernetes:autoscaling/v1:HorizontalPodAutoscaler")
GPU = "nvidia.com/gpu"


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


def _containers(props: Any) -> list:
    pod = _get(props, "spec", "template", "spec", default={}) or {}
    return list(pod.get("containers") or []) + list(pod.get("initContainers") or [])


def _resource(name, description, level, types, check, schema=None) -> ResourceValidationPolicy:
    """A resource rule: `check(props, config)` yields violation messages for resources of `types`."""

    def validate(args, report_violation):
        if args.resource_type in types:
            for message in check(args.props, args.get_config() if schema else {}):
                report_violation(message)

    return ResourceValidationPolicy(name=name, description=description, enforcement_level=level,
                                    validate=validate, config_schema=schema)


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


def _devtest_vcpus(p, config):
    limit = config.get("maxVcpus", 12)
    if _purpose(p) != "DevTest":
        return
    total = sum((vcpus(pool.get("vmSize") or "") or 0) * int(pool.get("count") or 0) for _, pool in _pool_sizes(p))
    if total >= limit:
        yield f"DevTest cluster has {total} vCPUs (limit {limit})"


def _protect_production(args, report_violation):
    if args.resource_type in (CLUSTER, REGISTRY) and _is_production(args.props) and not args.opts.protect:
        report_violation(f"{args.name} is a production resource without `protect`")


def _force_new(args, report_violation):
    if args.resource_type != CLUSTER or not args.opts.protect:
        return
    previous = (args.get_config().get("previous") or {}).get(args.name)
    if previous is None:
        return
    current = args.props.get("networkProfile") or {}
    for key in FORCE_NEW_NETWORK_FIELDS:
        if previous.get(key) != current.get(key):
            report_violation(f"networkProfile.{key} {previous.get(key)!r} -> {current.get(key)!r} replaces the protected cluster")


# --- ACR and firewall ------------------------------------------------------------------------------

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


def _blob_writer_scope(p, _):
    role, scope = p.get("roleDefinitionId"), p.get("scope")
    if not isinstance(role, str) or not role.endswith(BLOB_DATA_WRITER_ROLES) or not isinstance(scope, str):
        return  # not a blob writer, or the scope is unknown until the container exists (preview)
    if "/blobServices/default/containers/" not in scope:
        yield f"blob data write access is granted on {scope}, not on one container"


def _threat_intel(p, _):
    if p.get("threatIntelMode") != "Deny":
        yield f"threatIntelMode is {p.get('threatIntelMode')!r}, not 'Deny'"


def _udr_covered(args, report_violation):
    """UDR egress needs firewall allow rules, or the nodes cannot reach what the platform needs.

    Config `allowlist`: the destinations of the platform's egress allowlist (the plan passes the
    program's `egressAllowlist` output), each of which must appear in a rule collection."""
    clusters = [r for r in args.resources if r.resource_type == CLUSTER]
    udr = [c for c in clusters if _get(c.props, "networkProfile", "outboundType") == "userDefinedRouting"]
    if not udr:
        return
    allowed = {json.dumps(_plain(r.props.get("ruleCollections")), sort_keys=True)
               for r in args.resources if r.resource_type == RULE_GROUP}
    text = " ".join(allowed)
    missing = [entry for entry in args.get_config().get("allowlist") or [] if json.dumps(entry) not in text]
    if not allowed:
        report_violation("outboundType userDefinedRouting but no firewall rule collection group", udr[0].urn)
    for entry in missing:
        report_violation(f"egress allowlist entry {entry} is not in any firewall rule", udr[0].urn)


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


def _router_tls(args, report_violation):
    routers = [r for r in args.resources if r.resource_type == DEPLOYMENT
               and _labels(r.props).get("app.kubernetes.io/name") == ROUTER_NAME]
    tls_secrets = {_get(r.props, "metadata", "name") for r in args.resources
                   if r.resource_type == "kubernetes:core/v1:Secret" and r.props.get("type") == "kubernetes.io/tls"}
    production = any(_is_production(r.props) for r in args.resources if r.resource_type == CLUSTER)
    for router in routers if production else []:
        volumes = _get(router.props, "spec", "template", "spec", "volumes", default=[])
        if not any(_get(v, "secret", "secretName") in tls_secrets for v in volumes):
            report_violation("the production router mounts no kubernetes.io/tls Secret", router.urn)


_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_HASH_TAG = re.compile(r":[0-9a-f]{12,64}$")


def _images(p, config):
    registry = config.get("registry")
    for c in _containers(p):
        image = c.get("image") or ""
        if image.endswith(":latest") or not (_DIGEST.search(image) or _HASH_TAG.search(image)):
            yield f"container {c.get('name')}: image {image} is not pinned by digest or content-hash tag"
        if registry and not image.startswith(registry + "/"):
            yield f"container {c.get('name')}: image {image} is not from {registry}"
        elif not registry and ".azurecr.io/" not in image:
            yield f"container {c.get('name')}: image {image} is not from the stack's ACR"


def _resources_and_probes(p, _):
    if not _is_model(p):
        return
    for c in _get(p, "spec", "template", "spec", "containers", default=[]):
        res = c.get("resources") or {}
        for missing in [k for k in ("requests", "limits") if not res.get(k)] + \
                       [k for k in ("readinessProbe", "livenessProbe") if not c.get(k)]:
            yield f"container {c.get('name')} has no {missing}"


def _security(p, _):
    pod = _get(p, "spec", "template", "spec", default={}) or {}
    pod_non_root = _get(pod, "securityContext", "runAsNonRoot")
    for c in _containers(p):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            yield f"container {c.get('name')} is privileged"
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"container {c.get('name')} allows privilege escalation"
        if not (sc.get("runAsNonRoot") or (pod_non_root and sc.get("runAsNonRoot") is not False)):
            yield f"container {c.get('name')} may run as root"


def _gpu(p, _):
    pod = _get(p, "spec", "template", "spec", default={}) or {}
    selects_gpu = GPU in json.dumps(_plain(pod.get("nodeSelector") or {})) or \
        any(_get(c, "resources", "limits", GPU) for c in pod.get("containers") or [])
    if not _is_model(p) or not selects_gpu:
        return
    if not any(t.get("key") == GPU for t in pod.get("tolerations") or []):
        yield "GPU service does not tolerate the nvidia.com/gpu taint"
    if not any(_get(c, "resources", "limits", GPU) for c in pod.get("containers") or []):
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


def _scoring_timeout(p, _):
    for c in _get(p, "spec", "template", "spec", "containers", default=[]):
        env = {e.get("name"): e.get("value") for e in c.get("env") or []}
        if "SCORING_TIMEOUT_MS" in env and "WORKER_TIMEOUT" in env:
            if int(env["SCORING_TIMEOUT_MS"]) >= int(env["WORKER_TIMEOUT"]) * 1000:
                yield f"scoring timeout {env['SCORING_TIMEOUT_MS']} ms is not below the worker timeout {env['WORKER_TIMEOUT']} s"


_LIMIT_SCHEMA = {"type": "integer", "minimum": 1}

ALL = [
    _resource("aks-rbac-enabled", "AKS must have Kubernetes RBAC: set enableRBAC=true (cluster replaced).",
              MANDATORY, (CLUSTER,), _rbac),
    _resource("aks-local-accounts-disabled", "FastProd/DenseProd clusters must disable local accounts: set disableLocalAccounts=true with Entra ID integration.",
              MANDATORY, (CLUSTER,), _local_accounts),
    _resource("aks-api-server-restricted", "FastProd/DenseProd API servers must be private or limited by authorized IP ranges that do not admit every address: set cluster.privateCluster or cluster.authorizedIpRanges.",
              MANDATORY, (CLUSTER,), _private_or_ranges),
    _resource("aks-defender-enabled", "FastProd/DenseProd clusters need Defender for Containers: set securityProfile.defender with a Log Analytics workspace.",
              MANDATORY, (CLUSTER,), _defender),
    ResourceValidationPolicy(name="production-resources-protected",
                             description="FastProd/DenseProd clusters and registries must set the `protect` resource option.",
                             enforcement_level=MANDATORY, validate=_protect_production),
    ResourceValidationPolicy(name="protected-cluster-force-new-change",
                             description="A change to a force-new networkProfile field would replace a protected cluster: revert it, or build a new cluster and migrate.",
                             enforcement_level=MANDATORY, validate=_force_new,
                             config_schema=_schema(previous={"type": "object"})),
    _resource("aks-network-policy-enabled", "Set networkProfile.networkPolicy (cilium, calico or azure) so NetworkPolicies are enforced.",
              MANDATORY, (CLUSTER,), _network_policy),
    _resource("aks-container-insights-enabled", "Enable the omsagent add-on with a Log Analytics workspace (monitoring.containerInsights).",
              MANDATORY, (CLUSTER,), _container_insights),
    _resource("aks-kubenet-retiring", "kubenet retires on 2028-03-31: move to Azure CNI Overlay (network.plugin: azure, pluginMode: overlay) in a new cluster.",
              ADVISORY, (CLUSTER,), _kubenet),
    _resource("aks-no-retired-vm-sizes", "A node pool uses a retired VM size: move the pool to the named successor.",
              MANDATORY, (CLUSTER, AGENT_POOL), _retired_sizes),
    _resource("devtest-cluster-size", "DevTest clusters should stay under the vCPU limit (config maxVcpus, default 12): shrink the pools.",
              ADVISORY, (CLUSTER, AGENT_POOL), _devtest_vcpus, _schema(maxVcpus=_LIMIT_SCHEMA)),
    _resource("acr-admin-disabled", "Disable the ACR admin user (adminUserEnabled=false); pull with the kubelet identity.",
              MANDATORY, (REGISTRY,), _acr_admin),
    # Advisory until the platform creates the ACR private endpoint: without one, turning public access off
    # stops nodes pulling images. Raise it per stack with --policy-pack-config once you add the endpoint.
    _resource("acr-no-public-access-production", "FastProd/DenseProd registries should set publicNetworkAccess=Disabled behind a private endpoint (registry.publicNetworkAccess: false).",
              ADVISORY, (REGISTRY,), _acr_public),
    _resource("storage-account-locked-down", "Storage accounts must use TLS 1.2, HTTPS only, no public blob access and no shared keys (identities only): keep the ModelDataStorage settings.",
              MANDATORY, (STORAGE_ACCOUNT,), _storage_locked_down),
    _resource("blob-writers-scoped-to-a-container", "Blob Data Contributor/Owner must be granted on one container (…/blobServices/default/containers/<name>), not on an account or group: scope the role assignment to the container.",
              MANDATORY, (ROLE_ASSIGNMENT,), _blob_writer_scope),
    _resource("firewall-threat-intel-deny", "Set the firewall policy's threatIntelMode to Deny.",
              MANDATORY, (FIREWALL_POLICY,), _threat_intel),
    StackValidationPolicy(name="udr-egress-allowlist-covered",
                          description="With userDefinedRouting egress, the firewall rules must cover the platform's egress allowlist: add the missing entries to network.egress.",
                          enforcement_level=MANDATORY, validate=_udr_covered,
                          config_schema=_schema(allowlist={"type": "array", "items": {"type": "string"}})),
    StackValidationPolicy(name="no-hpa-on-model-deployments",
                          description="Model Deployments are scaled by the router's autoscaler: remove the HorizontalPodAutoscaler (only the router may have one).",
                          enforcement_level=MANDATORY, validate=_hpa_on_model),
    _resource("model-auth-production", "Model services in FastProd/DenseProd must use key or token auth: set authEnabled or tokenAuthEnabled.",
              MANDATORY, (SERVICE,), _model_auth),
    StackValidationPolicy(name="router-tls-production",
                          description="The router must serve TLS in FastProd/DenseProd: set router.tls with a certificate secret.",
                          enforcement_level=MANDATORY, validate=_router_tls),
    _resource("images-from-acr-pinned", "Images must come from the stack's ACR (config registry) and be pinned by digest or content-hash tag, never latest: build through the program.",
              MANDATORY, (DEPLOYMENT,), _images, _schema(registry={"type": "string"})),
    _resource("model-resources-and-probes", "Every model container needs requests, limits, readiness and liveness probes: set them in the deployment config.",
              MANDATORY, (DEPLOYMENT,), _resources_and_probes),
    _resource("containers-restricted", "Containers must not be privileged, must set allowPrivilegeEscalation=false and run as non-root.",
              MANDATORY, (DEPLOYMENT,), _security),
    _resource("gpu-services-scheduled", "GPU services must tolerate the nvidia.com/gpu taint and request nvidia.com/gpu: set gpuCount on the service.",
              MANDATORY, (DEPLOYMENT,), _gpu),
    _resource("payload-cap", "A model service's payload cap must not exceed the limit (config maxPayloadMb, default 100 MB).",
              MANDATORY, (SERVICE,), _payload, _schema(maxPayloadMb=_LIMIT_SCHEMA)),
    _resource("models-per-service", "At most 1,000 models per service (config maxModels): split the service.",
              MANDATORY, (SERVICE,), _model_count, _schema(maxModels=_LIMIT_SCHEMA)),
    _resource("replicas-min-le-max", "Autoscale minimum replicas must not exceed the maximum: fix autoscaler min/max.",
              MANDATORY, (SERVICE, *HPA_TYPES), _replicas),
    _resource("scoring-timeout-below-worker-timeout", "The scoring timeout must be below the model server's worker timeout, or workers are killed mid-request: lower scoringTimeoutMs.",
              MANDATORY, (DEPLOYMENT,), _scoring_timeout),
]


def markdown_table() -> str:
    """The rule table of docs/policies.md (a test keeps the document current)."""
    lines = ["| Rule | Level | Kind | Config | What it checks and how to fix it |", "|---|---|---|---|---|"]
    for policy in ALL:
        kind = "stack" if isinstance(policy, StackValidationPolicy) else "resource"
        config = ", ".join(f"`{key}`" for key in sorted(policy.config_schema.properties)) if policy.config_schema else ""
        lines.append(f"| `{policy.name}` | {policy.enforcement_level.value} | {kind} | {config} | {policy.description} |")
    return "\n".join(lines)
