"""Actuators: how a scaling decision becomes replicas.

`Actuator` is what the control plane drives. `KubernetesScaler` patches a Deployment's scale
subresource and only acts on a change; local mode's process actuator lives in `local/processes.py`.
"""

from __future__ import annotations

from typing import Protocol


class Actuator(Protocol):
    def ready_replicas(self, service: str) -> int: ...

    def target(self, service: str) -> int: ...

    def scale(self, service: str, replicas: int) -> None: ...


class KubernetesScaler:
    """Patches `deployments/scale` (the router's only write permission on model namespaces)."""

    def __init__(self, apps_api, deployments: dict[str, tuple[str, str]]):
        self.apps = apps_api  # kubernetes.client.AppsV1Api
        self.deployments = deployments  # service -> (namespace, deployment name)
        self.targets: dict[str, int] = {}

    def ready_replicas(self, service: str) -> int:
        """Ready, not merely created, replicas: a starting pod must not count as capacity."""
        namespace, name = self.deployments[service]
        deployment = self.apps.read_namespaced_deployment(name, namespace)
        self.targets.setdefault(service, deployment.spec.replicas or 0)
        return deployment.status.ready_replicas or 0

    def target(self, service: str) -> int:
        return self.targets.get(service, 0)

    def scale(self, service: str, replicas: int) -> None:
        if self.targets.get(service) == replicas:
            return
        namespace, name = self.deployments[service]
        self.apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": replicas}})
        self.targets[service] = replicas
