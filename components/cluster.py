"""AKS: the cluster (system pool inline), separate agent pools, GPU device plugin, Kubernetes provider.

Registration only: what each resource gets is decided in `components.cluster_profiles`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_azure_native.authorization as authorization
import pulumi_azure_native.containerservice as containerservice
import pulumi_azure_native.managedidentity as managedidentity
import pulumi_azure_native.monitor as monitor
import pulumi_kubernetes as k8s

from components.azure_roles import (
    NETWORK_CONTRIBUTOR,
    assignment_name,
    private_dns_grants,
    role_definition_id,
)
from components.cluster_profiles import (
    CONTAINER_INSIGHTS_EXTENSION,
    container_insights_rule,
    container_log_settings_manifest,
    kubeconfig_format,
    managed_cluster_profile,
    merged_authorized_ranges,
    network_contributor_scopes,
    nvidia_device_plugin_manifest,
    pool_profile,
)
from components.kubeconfig import convert_kubeconfig
from contract.names import Names
from contract.stack import StackConfig


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
    vnet_id: pulumi.Input[str] | None = None  # for the private-DNS grants on the VNet (components.azure_roles)


def _api_server_allowlist(
    configured: list[str], extra: pulumi.Input[list[str]] | None
) -> pulumi.Output[list[str]] | None:
    """The configured authorized ranges merged with ones known only at deploy time; None if there are neither."""
    if not configured and extra is None:
        return None
    return pulumi.Output.all(list(configured), extra or []).apply(lambda parts: merged_authorized_ranges(*parts))


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
        roles = {label: (NETWORK_CONTRIBUTOR, scope) for label, scope in network_contributor_scopes(args.node_subnet_id, args.route_table_id).items()}
        roles |= private_dns_grants(config, args.vnet_id)
        grants = [
            authorization.RoleAssignment(
                f"{name}-control-plane-{label}",
                role_assignment_name=assignment_name(names.stack, "control-plane", label),
                principal_id=self.identity.principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=role_definition_id(role),
                scope=scope,
                opts=child,
            )
            for label, (role, scope) in roles.items()
        ]

        self.cluster = containerservice.ManagedCluster(
            f"{name}-aks",
            resource_name_=names.of("aks"),
            resource_group_name=args.resource_group_name,
            location=config.location,
            dns_prefix=names.base,
            node_resource_group=f"{names.of('rg')}-nodes",
            identity={"type": "UserAssigned", "user_assigned_identities": [self.identity.id]},
            **managed_cluster_profile(
                config,
                node_subnet_id=args.node_subnet_id,
                workspace_id=args.workspace_id,
                authorized_ip_ranges=_api_server_allowlist(config.cluster.authorized_ip_ranges, args.extra_authorized_ranges),
            ),
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
            format=kubeconfig_format(config),
        )
        # Entra-only clusters: the exec plugin signs in the way cluster.kubeLogin says (CI: azurecli), never by device code.
        self.kubeconfig = pulumi.Output.secret(
            credentials.kubeconfigs.apply(
                lambda kcs: convert_kubeconfig(base64.b64decode(kcs[0].value).decode(), config.cluster.kube_login)
            )
        )
        self.k8s_provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # Replace the provider (and everything on it) only when the cluster itself is replaced.
            cluster_identifier=self.cluster.id,
            opts=child,
        )
        if config.gpu_pools:
            self.device_plugin = k8s.apps.v1.DaemonSet(
                f"{name}-nvidia-device-plugin",
                **nvidia_device_plugin_manifest(config),
                opts=pulumi.ResourceOptions(parent=self, provider=self.k8s_provider, depends_on=list(self.pools.values())),
            )
        if config.monitoring.container_insights:
            rule = monitor.DataCollectionRule(
                f"{name}-container-insights-dcr",
                data_collection_rule_name=f"MSCI-{config.location}-{names.of('aks')}"[:64],
                resource_group_name=args.resource_group_name,
                location=config.location,
                **container_insights_rule(args.workspace_id),
                tags=tags,
                opts=child,
            )
            monitor.DataCollectionRuleAssociation(
                f"{name}-container-insights-dcra",
                association_name=CONTAINER_INSIGHTS_EXTENSION,
                resource_uri=self.cluster.id,
                data_collection_rule_id=rule.id,
                description="Container Insights for this cluster: deleting it stops the agent's data collection.",
                opts=child,
            )
            k8s.core.v1.ConfigMap(
                f"{name}-container-insights-settings",
                **container_log_settings_manifest(),
                opts=pulumi.ResourceOptions(parent=self, provider=self.k8s_provider),
            )
        self.register_outputs({"clusterName": self.cluster.name, "clusterId": self.cluster.id})
