"""Azure Container Registry: the only registry the cluster pulls model and router images from.

The admin user stays off. Nodes pull with the kubelet identity (AcrPull); the deploying identity gets AcrPush and,
at deploy time only, pushes with an ACR refresh token exchanged for its Entra token (`components.acr_login`), so
the first `pulumi up` of a new stack builds and pushes with nothing run beforehand (no `az acr login`). No
exchange happens in a preview (nothing is pushed then, and a new registry has no address yet) or under mocks
(the offline plan needs no credentials).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.settings import get_monitor
from pulumi_azure_native import authorization, containerregistry

from components import acr_login
from components.azure_roles import (
    ACR_PULL,
    ACR_PUSH,
    assignment_name,
    role_definition_id,
)
from contract.names import Names
from contract.stack import StackConfig


@dataclass
class RegistryArgs:
    config: StackConfig
    names: Names
    resource_group_name: pulumi.Input[str]
    kubelet_object_id: pulumi.Input[str]


def deploying() -> bool:
    """True in a real `pulumi up`: not a preview, and a real engine rather than mocks."""
    return not pulumi.runtime.is_dry_run() and not isinstance(get_monitor(), MockMonitor)


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
        deployer = authorization.get_client_config_output()
        # The identity running `pulumi up` (a person or CI's federated app: either principal type) pushes the images.
        self.deployer_push = authorization.RoleAssignment(
            f"{name}-deployer-acrpush",
            role_assignment_name=assignment_name(names.stack, "deployer", "AcrPush"),
            principal_id=deployer.object_id,
            role_definition_id=role_definition_id(ACR_PUSH),
            scope=self.registry.id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.login_server = self.registry.login_server
        self.push_username = acr_login.ACR_USERNAME
        # None in previews and offline runs: nothing is pushed then, and pulumi-docker ignores a changed
        # username/password when it diffs an Image (pulumi/pulumi-docker#498), so no image is rebuilt for it.
        self.push_password: pulumi.Output[str] | None = None
        if deploying():
            self.push_password = pulumi.Output.secret(
                pulumi.Output.all(self.login_server, deployer.tenant_id, self.deployer_push.id).apply(
                    lambda parts: acr_login.push_password(parts[0], parts[1])
                )
            )
        self.register_outputs({"loginServer": self.login_server})
