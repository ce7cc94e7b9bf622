"""Log Analytics workspace: Container Insights, Defender and App Insights all write here."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native.operationalinsights as operationalinsights

from contract.names import Names
from contract.stack import StackConfig


@dataclass
class MonitoringArgs:
    config: StackConfig
    names: Names
    resource_group_name: pulumi.Input[str]


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:monitoring:Monitoring", name, None, opts)
        config = args.config
        self.workspace = operationalinsights.Workspace(
            f"{name}-logs",
            workspace_name=args.names.of("log"),
            resource_group_name=args.resource_group_name,
            location=config.location,
            sku={"name": "PerGB2018"},
            retention_in_days=config.monitoring.retention_days,
            tags=args.names.tags(config.purpose),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"workspaceId": self.workspace.id})
