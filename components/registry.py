"""Azure Container Registry: the only registry the cluster pulls model and router images from."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native.authorization as authorization
import pulumi_azure_native.containerregistry as containerregistry

from components.azure_roles import ACR_PULL, assignment_name, role_definition_id
from contract.names import Names
from contract.stack import StackConfig


@dataclass
class RegistryArgs:
    config: StackConfig
    names: Names
    resource_group_name: pulumi.Input[str]
    kubelet_object_id: pulumi.Input[str]


class Registry(pulumi.ComponentResource):
    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:registry:Registry", name, None, opts)
        config, names = args.config, args.names
        premium = config.registry.sku == "Premium"
        self.registry = containerregistry.Registry(
            f"{name}-acr",
            registry_name=names.registry,
            resource_group_name=args.resource_group_name,
            location=config.location,
            sku={"name": config.registry.sku},
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            data_endpoint_enabled=premium,
            public_network_access="Enabled" if config.registry.public_network_access else "Disabled",
            tags=names.tags(config.purpose),
            opts=pulumi.ResourceOptions(parent=self, protect=config.is_production),
        )
        self.kubelet_pull = authorization.RoleAssignment(
            f"{name}-kubelet-acrpull",
            role_assignment_name=assignment_name(names.stack, "kubelet", "AcrPull"),
            principal_id=args.kubelet_object_id,
            principal_type="ServicePrincipal",
            role_definition_id=role_definition_id(ACR_PULL),
            scope=self.registry.id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.login_server = self.registry.login_server
        self.register_outputs({"loginServer": self.login_server})
