"""What the AKS cluster is made of, decided from the validated stack config alone.

Every function here is pure: typed config in, plain dicts out (the keyword arguments of one
resource, one nested profile of it, or one Kubernetes manifest). Values only known at deploy time
(subnet, route-table and workspace ids, the API server's merged allowlist) are Pulumi Outputs that
pass through untouched as opaque arguments, so this module imports no Pulumi. That keeps each
decision (network plugin and policy, pool taints and GPU driver, the system pool reserved for
critical add-ons, private vs allowlisted API server, run command off, Entra admin groups, Defender,
Image Cleaner, Container Insights and Azure Policy add-ons, the device plugin's toleration) testable
on its own, and leaves `components.cluster` with nothing to do but register resources.
"""

from __future__ import annotations

from collections.abc import Iterable

from components.replacement import FORCE_NEW_NETWORK_FIELDS
from contract.stack import (
    ACCELERATOR_LABEL,
    GPU_TAINT,
    PoolConfig,
    StackConfig,
    toleration_for,
)

SYSTEM_POOL = "system"
# AKS's taint for a system pool that runs only critical add-ons (CoreDNS, konnectivity, metrics-server and
# the add-ons all tolerate it); what Terraform's only_critical_addons_enabled sets.
CRITICAL_ADDONS_ONLY_TAINT = "CriticalAddonsOnly=true:NoSchedule"
# Image Cleaner's scan interval: ARM clients must give one (24 h to 3 months); a week is the CLI default.
IMAGE_CLEANER_INTERVAL_HOURS = 168
NVIDIA_DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.18.0"
# Force-new network fields we set explicitly, so a provider default can never flip and replace the
# cluster. Not used: serviceCidrs (dual-stack; we set the single serviceCidr) and networkMode (legacy CNI bridge).
EXPLICIT_NETWORK_FIELDS = tuple(f for f in FORCE_NEW_NETWORK_FIELDS if f not in ("serviceCidrs", "networkMode"))


def network_profile(config: StackConfig) -> dict:
    """The cluster's network profile, every field of EXPLICIT_NETWORK_FIELDS that applies set explicitly."""
    net = config.network
    profile = {
        "network_plugin": "kubenet" if net.plugin == "kubenet" else "azure",
        # kubenet supports only Calico; Azure CNI (flat or overlay) uses Azure network policy.
        "network_policy": "calico" if net.plugin == "kubenet" else "azure",
        "network_dataplane": "azure",
        "service_cidr": net.service_cidr,
        "dns_service_ip": net.dns_service_ip,
        "outbound_type": "loadBalancer" if config.egress.mode == "loadBalancer" else "userDefinedRouting",
        "load_balancer_sku": "standard",
    }
    if net.plugin == "azureOverlay":
        profile["network_plugin_mode"] = "overlay"
    if net.effective_pod_cidr:
        profile["pod_cidr"] = net.effective_pod_cidr
    return profile


def general_purpose_pools(config: StackConfig) -> list[PoolConfig]:
    """User pools any workload can run on: no accelerator and no taint to tolerate."""
    return [p for p in config.pools if p.accelerator == "none" and not p.effective_taints]


def system_pool_profile(config: StackConfig, subnet_id: object) -> dict:
    """The inline system pool: a fixed node count (no autoscaler) for the cluster's own add-ons.

    Reserved for critical add-ons (CRITICAL_ADDONS_ONLY_TAINT) as soon as a general-purpose user pool can
    take the workloads; without one it is where the router and CPU models run, so it stays untainted.
    """
    system_pool = config.cluster.system_pool
    profile = {
        "name": SYSTEM_POOL,
        "mode": "System",
        "os_type": "Linux",
        "os_sku": "Ubuntu",
        "vm_size": system_pool.vm_size,
        "count": system_pool.count,
        "enable_auto_scaling": False,
        "max_pods": config.network.effective_max_pods,
        "vnet_subnet_id": subnet_id,
        "orchestrator_version": config.cluster.kubernetes_version,
        "upgrade_settings": {"max_surge": "1"},
    }
    if general_purpose_pools(config):
        profile["node_taints"] = [CRITICAL_ADDONS_ONLY_TAINT]
    return profile


def pool_profile(pool: PoolConfig, config: StackConfig, subnet_id: object) -> dict:
    """AgentPool arguments for a user pool (GPU/FPGA pools carry their taint and label)."""
    args = {
        "mode": "User",
        "os_type": "Linux",
        "os_sku": "Ubuntu",
        "vm_size": pool.vm_size,
        "enable_auto_scaling": True,
        "min_count": pool.min_count,
        "max_count": pool.max_count,
        "count": max(pool.min_count, 1),
        "max_pods": config.network.effective_max_pods,
        "vnet_subnet_id": subnet_id,
        "orchestrator_version": config.cluster.kubernetes_version,
        "node_labels": pool.effective_labels,
        "node_taints": pool.effective_taints,
        "upgrade_settings": {"max_surge": "1"},
    }
    if pool.accelerator == "gpu":
        args["gpu_profile"] = {"driver": "Install"}
        if pool.mig_profile:
            args["gpu_instance_profile"] = pool.mig_profile
    return args


def merged_authorized_ranges(configured: Iterable[str], extra: Iterable[str]) -> list[str]:
    """The API server's allowlist: the configured ranges plus deploy-time ones (the firewall's /32).

    Sorted and without duplicates, so the same addresses always give the same input (no spurious diff).
    """
    return sorted(set(configured) | set(extra))


def api_server_access_profile(config: StackConfig, authorized_ip_ranges: object | None) -> dict:
    """A private cluster has no public endpoint to limit; a public one is limited to `authorized_ip_ranges`.

    `authorized_ip_ranges` is the merged allowlist (see `merged_authorized_ranges`), or None when nothing
    limits the endpoint; then the endpoint is open. Run command (`az aks command invoke`) is always off: it
    reaches the API server through ARM, around the private endpoint and the authorized ranges.
    """
    profile: dict = {"disable_run_command": True}
    if config.cluster.private_cluster:
        profile["enable_private_cluster"] = True
        # system | none | a zone id (https://learn.microsoft.com/azure/aks/private-clusters); grants: components.azure_roles.
        profile["private_dns_zone"] = config.cluster.private_dns_zone
    elif authorized_ip_ranges is not None:
        profile["authorized_ip_ranges"] = authorized_ip_ranges
    return profile


def aad_profile(config: StackConfig) -> dict | None:
    """Entra ID integration with the configured admin groups (Kubernetes RBAC, not Azure RBAC, authorizes)."""
    admin_groups = config.cluster.admin_group_object_ids
    if not admin_groups:
        return None
    return {"managed": True, "enable_azure_rbac": False, "admin_group_object_ids": list(admin_groups)}


def security_profile(config: StackConfig, workspace_id: object) -> dict:
    """Workload identity always (pods get Entra tokens, no secrets), Image Cleaner always (removes unused,
    vulnerable images from the nodes); Defender reporting to the workspace if on."""
    profile: dict = {
        "workload_identity": {"enabled": True},
        "image_cleaner": {"enabled": True, "interval_hours": IMAGE_CLEANER_INTERVAL_HOURS},
    }
    if config.defender:
        profile["defender"] = {
            "log_analytics_workspace_resource_id": workspace_id,
            "security_monitoring": {"enabled": True},
        }
    return profile


def addon_profiles(config: StackConfig, workspace_id: object) -> dict:
    """Azure Policy always (enforces the Azure Policy for Kubernetes assignments of the subscription), and
    Container Insights (the omsagent add-on) sending to the stack's workspace if on."""
    addons: dict = {"azurepolicy": {"enabled": True}}
    if config.monitoring.container_insights:
        # Managed-identity authentication: legacy agent authentication is retired and ingests nothing after
        # 2026-09-30 (https://learn.microsoft.com/azure/azure-monitor/containers/container-insights-authentication).
        addons["omsagent"] = {"enabled": True, "config": {"logAnalyticsWorkspaceResourceID": workspace_id, "useAADAuth": "true"}}
    return addons


# What the Container Insights agent sends with managed-identity authentication: ContainerLogV2 (the README's
# queries) and the Kubernetes inventory, events and performance streams the Insights views read (the stream
# list of https://learn.microsoft.com/azure/azure-monitor/containers/kubernetes-monitoring-enable, without the
# legacy Microsoft-ContainerLog).
CONTAINER_INSIGHTS_STREAMS = (
    "Microsoft-ContainerLogV2",
    "Microsoft-KubeEvents",
    "Microsoft-KubePodInventory",
    "Microsoft-KubeNodeInventory",
    "Microsoft-KubePVInventory",
    "Microsoft-KubeServices",
    "Microsoft-KubeMonAgentEvents",
    "Microsoft-InsightsMetrics",
    "Microsoft-ContainerInventory",
    "Microsoft-ContainerNodeInventory",
    "Microsoft-Perf",
)
CONTAINER_INSIGHTS_EXTENSION = "ContainerInsightsExtension"
_WORKSPACE_DESTINATION = "ciworkspace"


def container_insights_rule(workspace_id: object) -> dict:
    """The data collection rule of the Container Insights agent (managed identity): the ContainerInsights
    extension's streams, all to the stack's workspace, ContainerLogV2 on. Its association with the cluster is
    named CONTAINER_INSIGHTS_EXTENSION, as AKS's own onboarding names it."""
    streams = list(CONTAINER_INSIGHTS_STREAMS)
    return {
        "kind": "Linux",
        "description": "Container Insights (managed identity): ContainerLogV2, Kubernetes inventory, events and performance",
        "data_sources": {
            "extensions": [
                {
                    "name": CONTAINER_INSIGHTS_EXTENSION,
                    "extension_name": "ContainerInsights",
                    "streams": streams,
                    "extension_settings": {
                        "dataCollectionSettings": {"interval": "1m", "namespaceFilteringMode": "Off", "enableContainerLogV2": True}
                    },
                }
            ]
        },
        "destinations": {"log_analytics": [{"name": _WORKSPACE_DESTINATION, "workspace_resource_id": workspace_id}]},
        "data_flows": [{"streams": streams, "destinations": [_WORKSPACE_DESTINATION]}],
    }


def managed_cluster_profile(
    config: StackConfig, *, node_subnet_id: object, workspace_id: object, authorized_ip_ranges: object | None
) -> dict:
    """ManagedCluster arguments that follow from the config (names, identity and tags are the caller's)."""
    cluster = config.cluster
    return {
        "kubernetes_version": cluster.kubernetes_version,
        "sku": {"name": "Base", "tier": cluster.sku_tier},
        # Long-term support keeps a minor past its community end of life (contract/kubernetes_versions.py).
        "support_plan": cluster.support_plan,
        "enable_rbac": True,
        "disable_local_accounts": cluster.disable_local_accounts,
        "aad_profile": aad_profile(config),
        "api_server_access_profile": api_server_access_profile(config, authorized_ip_ranges),
        # The OIDC issuer is what workload identity's federated credentials trust.
        "oidc_issuer_profile": {"enabled": True},
        "security_profile": security_profile(config, workspace_id),
        "addon_profiles": addon_profiles(config, workspace_id),
        "auto_upgrade_profile": {"upgrade_channel": "patch", "node_os_upgrade_channel": "NodeImage"},
        "network_profile": network_profile(config),
        # Only the system pool is inline: editing inline pools touches every pool (and adding one fails).
        "agent_pool_profiles": [system_pool_profile(config, node_subnet_id)],
    }


def network_contributor_scopes(node_subnet_id: object, route_table_id: object | None) -> dict[str, object]:
    """Where the control-plane identity needs Network Contributor, by label: the node subnet, and the
    route table when there is one (kubenet writes pod routes to it; a UDR egress owns it)."""
    scopes = {"node-subnet": node_subnet_id}
    if route_table_id is not None:
        scopes["route-table"] = route_table_id
    return scopes


def kubeconfig_format(config: StackConfig) -> str | None:
    """Entra-only clusters (local accounts off) need kubelogin's exec plugin; None is the default format."""
    return "exec" if config.cluster.disable_local_accounts else None


def nvidia_device_plugin_manifest(config: StackConfig) -> dict:
    """The device plugin DaemonSet's metadata and spec: AKS installs the GPU driver, but the plugin that
    advertises nvidia.com/gpu is ours to run, on GPU nodes only (their label, their taint)."""
    labels = {"app.kubernetes.io/name": "nvidia-device-plugin", "app.kubernetes.io/part-of": "aks-inference"}
    # With MIG pools, the single strategy advertises each slice as one nvidia.com/gpu.
    mig = any(p.mig_profile for p in config.gpu_pools)
    return {
        "metadata": {"name": "nvidia-device-plugin", "namespace": "kube-system", "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "nodeSelector": {ACCELERATOR_LABEL: "gpu"},
                    "tolerations": [toleration_for(GPU_TAINT)],
                    "containers": [
                        {
                            "name": "nvidia-device-plugin",
                            "image": NVIDIA_DEVICE_PLUGIN_IMAGE,
                            "env": [
                                {"name": "FAIL_ON_INIT_ERROR", "value": "false"},
                                {"name": "MIG_STRATEGY", "value": "single" if mig else "none"},
                            ],
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                            "resources": {
                                "requests": {"cpu": "10m", "memory": "32Mi"},
                                "limits": {"cpu": "100m", "memory": "128Mi"},
                            },
                            "volumeMounts": [{"name": "device-plugin", "mountPath": "/var/lib/kubelet/device-plugins"}],
                        }
                    ],
                    "volumes": [{"name": "device-plugin", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}],
                },
            },
        },
    }


def container_log_settings_manifest() -> dict:
    """The Container Insights agent's ConfigMap (metadata and data): ContainerLogV2, so pod and container
    names are columns and JSON log lines a queryable `LogMessage`.

    The router's access log and the model servers' logs are JSON with a shared `request_id`, so one
    query follows a request end to end (README: "Logs"). This ConfigMap is the agent's only one.
    """
    settings = "\n".join([
        "[log_collection_settings]",
        "   [log_collection_settings.stdout]",
        "      enabled = true",
        '      exclude_namespaces = ["kube-system", "gatekeeper-system"]',
        "   [log_collection_settings.stderr]",
        "      enabled = true",
        '      exclude_namespaces = ["kube-system", "gatekeeper-system"]',
        "   [log_collection_settings.schema]",
        '      containerlog_schema_version = "v2"',
    ])
    return {
        "metadata": {"name": "container-azm-ms-agentconfig", "namespace": "kube-system", "labels": {"app.kubernetes.io/part-of": "aks-inference"}},
        "data": {"schema-version": "v1", "config-version": "ver1", "log-data-collection-settings": settings},
    }
