"""The whole platform for one stack: everything else hangs off this component."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_azure_native.resources as resources

from components.cluster import Cluster, ClusterArgs
from components.egress import egress_allowlist
from components.firewall import Egress, EgressArgs, RouterDnat, RouterDnatArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import (
    Network,
    NetworkArgs,
    RegistryEndpoint,
    RegistryEndpointArgs,
)
from components.registry import Registry, RegistryArgs
from contract.names import Names
from contract.service import ModelService
from contract.stack import StackConfig


@dataclass
class PlatformArgs:
    config: StackConfig
    services: Sequence[ModelService]  # the stack's model services, loaded with the config
    names: Names
    # endpoint name -> its versions' services (LoadedStack.versions), deployed in place of the endpoint's own
    versions: Mapping[str, Sequence[ModelService]] = field(default_factory=dict)


class Platform(pulumi.ComponentResource):
    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:platform:Platform", name, None, opts)
        self.config = config = args.config
        self.names = names = args.names
        child = pulumi.ResourceOptions(parent=self)

        self.resource_group = resources.ResourceGroup(
            f"{name}-rg",
            resource_group_name=names.of("rg"),
            location=config.location,
            tags=names.tags(config.purpose),
            opts=child,
        )
        rg_name = self.resource_group.name
        self.monitoring = Monitoring(f"{name}-monitoring", MonitoringArgs(config, names, rg_name), opts=child)
        self.network = Network(f"{name}-network", NetworkArgs(config, names, rg_name), opts=child)

        self.registry_login_server = f"{names.registry}.azurecr.io"
        versions = [version for versions in args.versions.values() for version in versions]
        collects = any(service.deployment.collects_model_data for service in (*args.services, *versions))
        self.egress_allowlist = egress_allowlist(config, self.registry_login_server, names.model_data_account if collects else None)
        self.egress = None
        if config.routes_egress:
            self.egress = Egress(
                f"{name}-egress",
                EgressArgs(
                    config,
                    names,
                    rg_name,
                    self.egress_allowlist,
                    route_table_name=self.network.route_table.name,
                    firewall_subnet_id=self.network.firewall_subnet.id if self.network.firewall_subnet else None,
                ),
                opts=child,
            )
        firewall_ranges = self.egress.public_ranges if self.egress else None
        self.cluster = Cluster(
            f"{name}-cluster",
            ClusterArgs(
                config,
                names,
                rg_name,
                node_subnet_id=self.network.node_subnet.id,
                workspace_id=self.monitoring.workspace.id,
                route_table_id=self.network.route_table.id if self.network.route_table else None,
                # With authorized IP ranges, the firewall's own addresses (every public IP it SNATs to) must reach the API server.
                extra_authorized_ranges=firewall_ranges,
                # Nodes need their egress path (the default route, and the peering to the hub it may lead to) at creation.
                egress_ready=[*self.network.peerings, *([self.egress.default_route] if self.egress else [])],
                vnet_id=self.network.vnet.id,
            ),
            opts=child,
        )
        self.registry = Registry(
            f"{name}-registry",
            RegistryArgs(config, names, rg_name, kubelet_object_id=self.cluster.kubelet_object_id),
            opts=child,
        )
        pulls_ready: list[pulumi.Resource] = [self.registry]
        if self.network.registry_subnet is not None:
            self.registry_endpoint = RegistryEndpoint(
                f"{name}-registry-endpoint",
                RegistryEndpointArgs(config, names, rg_name, self.registry.registry.id, self.network),
                opts=child,
            )
            pulls_ready.append(self.registry_endpoint)
        self.k8s_provider = self.cluster.k8s_provider
        self.models = self.router = None
        if config.models:
            from components.router_cluster import RouterCluster, RouterClusterArgs
            from components.workloads import ModelServices, ModelServicesArgs

            on_cluster = {"kubernetes": self.k8s_provider}
            self.models = ModelServices(
                f"{name}-models",
                ModelServicesArgs(
                    config, args.services, self.registry_login_server, monitoring=(rg_name, self.monitoring.workspace.id),
                    names=names, oidc_issuer_url=self.cluster.oidc_issuer_url,
                    registry_password=self.registry.push_password, versions=args.versions,
                ),
                opts=pulumi.ResourceOptions(parent=self, providers=on_cluster, depends_on=pulls_ready),
            )
            published_ip = self.egress.public_ip.ip_address if config.router_dnat else None
            self.router = RouterCluster(
                f"{name}-router",
                RouterClusterArgs(
                    config, self.registry_login_server, self.models.keyed_services, list(self.models.namespaces.values()),
                    registry_password=self.registry.push_password, published_ip=published_ip, scaled=self.models.deployed,
                ),
                opts=pulumi.ResourceOptions(parent=self, providers=on_cluster, depends_on=pulls_ready),
            )
            if config.router_dnat:
                RouterDnat(
                    f"{name}-router-dnat",
                    RouterDnatArgs(rg_name, self.egress, self.router.load_balancer_ip, 443 if config.tls.enabled else 80),
                    opts=child,
                )
        self.register_outputs({"clusterName": self.cluster.cluster.name, "registryLoginServer": self.registry.login_server})

    def scoring_endpoints(self) -> dict:
        """v1-shaped URIs per service: /api/v1/service/<name>/score and .../swagger.json."""
        if not self.router:
            return {}
        return {
            service: {
                "scoringUri": self.router.base_url.apply(lambda base, s=service: base and f"{base}/api/v1/service/{s}/score"),
                "swaggerUri": self.router.base_url.apply(lambda base, s=service: base and f"{base}/api/v1/service/{s}/swagger.json"),
            }
            for service in self.models.scoring_names
        }

    def network_summary(self) -> dict:
        net = self.config.network
        return {
            "plugin": net.plugin,
            "vnetCidr": net.vnet_cidr,
            "nodeSubnetCidr": net.node_subnet_cidr,
            "podCidr": net.effective_pod_cidr,
            "serviceCidr": net.service_cidr,
            "dnsServiceIp": net.dns_service_ip,
            "maxPods": net.effective_max_pods,
            "egressMode": self.config.egress.mode,
        }
