"""AKS: the cluster (system pool inline), separate agent pools, GPU device plugin, Kubernetes provider."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_azure_native.authorization as authorization
import pulumi_azure_native.containerservice as containerservice
import pulumi_azure_native.managedidentity as managedidentity
import pulumi_kubernetes as k8s

from components.azure_roles import (
    NETWORK_CONTRIBUTOR,
    assignment_name,
    role_definition_id,
)
from components.names import Names
from components.replacement import FORCE_NEW_NETWORK_FIELDS
from contract.stack import ACCELERATOR_LABEL, GPU_TAINT, PoolConfig, StackConfig

SYSTEM_POOL = "system"
NVIDIA_DEVICE_PLUGIN_IMAGE = "nvcr.io/nvidia/k8s-device-plugin:v0.18.0"
# Force-new network fields we set explicitly, so a provider default can never flip and replace the
# cluster. Not used: serviceCidrs (dual-stack; we set the single serviceCidr) and networkMode (legacy CNI bridge).
EXPLICIT_NETWORK_FIELDS = tuple(f for f in FORCE_NEW_NETWORK_FIELDS if f not in ("serviceCidrs", "networkMode"))


@dataclass
class ClusterArgs:
    config: StackConfig
    names: Names
    resource_group_name: pulumi.Input[str]
    node_subnet_id: pulumi.Input[str]
    workspace_id: pulumi.Input[str]
    route_table_id: pulumi.Input[str] | None = None
    extra_authorized_ranges: pulumi.Input[list[str]] | None = None
    egress_ready: list[pulumi.Resource] | None = None


def network_profile(config: StackConfig) -> dict:
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


def pool_profile(pool: PoolConfig, config: StackConfig, subnet_id: pulumi.Input[str]) -> dict:
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


class Cluster(pulumi.ComponentResource):
    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:cluster:Cluster", name, None, opts)
        config, names = args.config, args.names
        child = pulumi.ResourceOptions(parent=self)
        tags = names.tags(config.purpose)

        # A user-assigned control-plane identity, so it can be granted rights on our subnet
        # (and on the route table AKS writes pod routes to with kubenet) before the cluster exists.
        self.identity = managedidentity.UserAssignedIdentity(
            f"{name}-control-plane",
            resource_name_=names.of("id-aks"),
            resource_group_name=args.resource_group_name,
            location=config.location,
            tags=tags,
            opts=child,
        )
        scopes = {"node-subnet": args.node_subnet_id}
        if args.route_table_id is not None:
            scopes["route-table"] = args.route_table_id
        grants = [
            authorization.RoleAssignment(
                f"{name}-control-plane-{label}",
                role_assignment_name=assignment_name(names.stack, "control-plane", label),
                principal_id=self.identity.principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=role_definition_id(NETWORK_CONTRIBUTOR),
                scope=scope,
                opts=child,
            )
            for label, scope in scopes.items()
        ]

        cluster_config = config.cluster
        access: dict = {}
        if cluster_config.private_cluster:
            access["enable_private_cluster"] = True
        elif cluster_config.authorized_ip_ranges or args.extra_authorized_ranges is not None:
            access["authorized_ip_ranges"] = pulumi.Output.all(
                list(cluster_config.authorized_ip_ranges), args.extra_authorized_ranges or []
            ).apply(lambda parts: sorted(set(parts[0]) | set(parts[1])))
        security: dict = {"workload_identity": {"enabled": True}}
        if config.defender:
            security["defender"] = {
                "log_analytics_workspace_resource_id": args.workspace_id,
                "security_monitoring": {"enabled": True},
            }
        addons = {}
        if config.monitoring.container_insights:
            addons["omsagent"] = {"enabled": True, "config": {"logAnalyticsWorkspaceResourceID": args.workspace_id}}

        self.cluster = containerservice.ManagedCluster(
            f"{name}-aks",
            resource_name_=names.of("aks"),
            resource_group_name=args.resource_group_name,
            location=config.location,
            dns_prefix=names.base,
            node_resource_group=f"{names.of('rg')}-nodes",
            kubernetes_version=cluster_config.kubernetes_version,
            sku={"name": "Base", "tier": cluster_config.sku_tier},
            identity={"type": "UserAssigned", "user_assigned_identities": [self.identity.id]},
            enable_rbac=True,
            disable_local_accounts=cluster_config.disable_local_accounts,
            aad_profile=(
                {"managed": True, "enable_azure_rbac": False, "admin_group_object_ids": list(cluster_config.admin_group_object_ids)}
                if cluster_config.admin_group_object_ids
                else None
            ),
            api_server_access_profile=access or None,
            oidc_issuer_profile={"enabled": True},
            security_profile=security,
            addon_profiles=addons or None,
            auto_upgrade_profile={"upgrade_channel": "patch", "node_os_upgrade_channel": "NodeImage"},
            network_profile=network_profile(config),
            # Only the system pool is inline: editing inline pools touches every pool (and adding one fails).
            agent_pool_profiles=[
                {
                    "name": SYSTEM_POOL,
                    "mode": "System",
                    "os_type": "Linux",
                    "os_sku": "Ubuntu",
                    "vm_size": cluster_config.system_pool.vm_size,
                    "count": cluster_config.system_pool.count,
                    "enable_auto_scaling": False,
                    "max_pods": config.network.effective_max_pods,
                    "vnet_subnet_id": args.node_subnet_id,
                    "orchestrator_version": cluster_config.kubernetes_version,
                    "upgrade_settings": {"max_surge": "1"},
                }
            ],
            tags=tags,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=config.is_production,
                depends_on=[*grants, *(args.egress_ready or [])],
            ),
        )

        self.pools: dict[str, containerservice.AgentPool] = {}
        for pool in config.pools:
            self.pools[pool.name] = containerservice.AgentPool(
                f"{name}-pool-{pool.name}",
                agent_pool_name=pool.name,
                resource_group_name=args.resource_group_name,
                resource_name_=self.cluster.name,
                **pool_profile(pool, config, args.node_subnet_id),
                tags=tags,
                # The cluster autoscaler owns the node count after creation.
                opts=pulumi.ResourceOptions(parent=self, ignore_changes=["count"]),
            )

        self.oidc_issuer_url = self.cluster.oidc_issuer_profile.apply(lambda p: p.issuer_url)
        self.kubelet_object_id = self.cluster.identity_profile.apply(lambda p: p["kubeletidentity"].object_id)
        credentials = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=args.resource_group_name,
            resource_name=self.cluster.name,
            # Entra-only clusters (local accounts off) need kubelogin's exec plugin.
            format="exec" if cluster_config.disable_local_accounts else None,
        )
        self.kubeconfig = pulumi.Output.secret(
            credentials.kubeconfigs.apply(lambda kcs: base64.b64decode(kcs[0].value).decode())
        )
        self.k8s_provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # Replace the provider (and everything on it) only when the cluster itself is replaced.
            cluster_identifier=self.cluster.id,
            opts=child,
        )
        if config.gpu_pools:
            self.device_plugin = self._nvidia_device_plugin(name, config)
        if config.monitoring.container_insights:
            self._container_log_schema(name)
        self.register_outputs({"clusterName": self.cluster.name, "clusterId": self.cluster.id})

    def _container_log_schema(self, name: str) -> k8s.core.v1.ConfigMap:
        """ContainerLogV2: pod and container names as columns, JSON log lines as a queryable `LogMessage`.

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
        return k8s.core.v1.ConfigMap(
            f"{name}-container-insights-settings",
            metadata={"name": "container-azm-ms-agentconfig", "namespace": "kube-system", "labels": {"app.kubernetes.io/part-of": "aks-inference"}},
            data={"schema-version": "v1", "config-version": "ver1", "log-data-collection-settings": settings},
            opts=pulumi.ResourceOptions(parent=self, provider=self.k8s_provider),
        )

    def _nvidia_device_plugin(self, name: str, config: StackConfig) -> k8s.apps.v1.DaemonSet:
        """AKS installs the GPU driver; the device plugin that advertises nvidia.com/gpu is ours to run."""
        labels = {"app.kubernetes.io/name": "nvidia-device-plugin", "app.kubernetes.io/part-of": "aks-inference"}
        mig = any(p.mig_profile for p in config.gpu_pools)
        key, rest = GPU_TAINT.split("=", 1)
        value, effect = rest.split(":")
        return k8s.apps.v1.DaemonSet(
            f"{name}-nvidia-device-plugin",
            metadata={"name": "nvidia-device-plugin", "namespace": "kube-system", "labels": labels},
            spec={
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "priorityClassName": "system-node-critical",
                        "nodeSelector": {ACCELERATOR_LABEL: "gpu"},
                        "tolerations": [{"key": key, "operator": "Equal", "value": value, "effect": effect}],
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
            opts=pulumi.ResourceOptions(parent=self, provider=self.k8s_provider, depends_on=list(self.pools.values())),
        )
