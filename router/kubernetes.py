"""In-cluster control plane: discover model services, write Envoy's files, and (as leader) scale.

Runs next to Envoy in each router pod, sharing the config directory (an emptyDir).
Discovery polls the API every refresh tick (list calls are cheap at model-service
scale and need no long-lived watches); see router/discovery.py for the contract.
`reconcile_once` is one round of that loop with the API server behind the small `ClusterApi`
protocol, so tests drive it with fakes; `main` wires the real client and repeats it every second.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, NoReturn, Protocol

from prometheus_client import start_http_server

from router.actuators import KubernetesScaler
from router.controlplane import ControlPlane, ManagedService
from router.discovery import (
    MODEL_SERVICE_LABEL,
    SERVICE_NAME_LABEL,
    DiscoveredService,
    discover,
)
from router.environment import RouterEnvironment
from router.envoy_files import ConfigWriter
from router.leader import KubernetesLeases, LeaderElector
from router.metrics import Load, collect
from router.spec import RouterSettings

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api, DiscoveryV1Api

LEASE_NAME = "aks-inference-autoscaler"
RECONCILE_SECONDS = 1.0
MODEL_SERVICE_SELECTOR = f"{MODEL_SERVICE_LABEL}=true"


class ClusterApi(Protocol):
    """What one round reads from the API server: objects as the API's own JSON dicts (the discovery
    contract's input) and the router peers' pod addresses."""

    def model_services(self, namespace: str) -> list[dict]: ...

    def endpoint_slices(self, namespace: str) -> list[dict]: ...

    def model_secrets(self, namespace: str) -> list[dict]: ...

    def router_peer_addresses(self, namespace: str, router_service: str) -> list[str]: ...


def as_api_dicts(object_list: object) -> list[dict]:
    """Client objects -> the API's own JSON shape (camelCase), which the discovery contract reads."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(object_list).get("items", [])


class KubernetesClusterApi:
    """ClusterApi over the kubernetes client; the label selectors run on the API server."""

    def __init__(self, core: CoreV1Api, discovery: DiscoveryV1Api):
        self.core, self.discovery = core, discovery

    def model_services(self, namespace: str) -> list[dict]:
        return as_api_dicts(self.core.list_namespaced_service(namespace, label_selector=MODEL_SERVICE_SELECTOR))

    def endpoint_slices(self, namespace: str) -> list[dict]:
        return as_api_dicts(self.discovery.list_namespaced_endpoint_slice(namespace))

    def model_secrets(self, namespace: str) -> list[dict]:
        return as_api_dicts(self.core.list_namespaced_secret(namespace, label_selector=MODEL_SERVICE_SELECTOR))

    def router_peer_addresses(self, namespace: str, router_service: str) -> list[str]:
        """Every address in the router Service's EndpointSlices: each replica's Envoy, this one included."""
        peers = self.discovery.list_namespaced_endpoint_slice(namespace, label_selector=f"{SERVICE_NAME_LABEL}={router_service}")
        return [address for s in peers.items for e in (s.endpoints or []) for address in (e.addresses or [])]


@dataclass(frozen=True)
class Reconciled:
    """What one round found, and whether this replica led it (only the leader scales)."""

    services: list[DiscoveredService]
    leader: bool


def reconcile_once(
    api: ClusterApi,
    writer: ConfigWriter,
    elector: LeaderElector,
    plane: ControlPlane,
    scaler: KubernetesScaler,
    settings: RouterSettings,
    environment: RouterEnvironment,
    collector: Callable[[list[str]], dict[str, Load]] = collect,
) -> Reconciled:
    """One round: discover, write this replica's Envoy files, then scale if this replica holds the lease.

    Every replica writes its own files (each Envoy serves from them); scaling decisions come from the
    leader alone, from the load summed over every replica's Envoy."""
    services: list[dict] = []
    slices: list[dict] = []
    secrets: list[dict] = []
    for namespace in environment.model_namespaces:
        services += api.model_services(namespace)
        slices += api.endpoint_slices(namespace)
        secrets += api.model_secrets(namespace)
    found = discover(services, slices, secrets)
    # Each replica sizes its queues from the service times its own Envoy observes.
    observed = collector([f"http://127.0.0.1:{settings.admin_port}"])
    writer.write([replace(d.route, latency_ms=observed.get(d.route.cluster_name, Load()).latency_ms) for d in found], settings)
    leader = elector.try_acquire_or_renew()
    if leader:
        scaler.deployments = {d.route.name: (d.route.namespace, d.deployment) for d in found}
        peers = api.router_peer_addresses(environment.namespace, environment.router_service)
        plane.set_services([ManagedService(d.route.name, d.route.cluster_name, d.autoscale) for d in found])
        plane.admin_urls = [f"http://{address}:{settings.admin_port}" for address in peers]
        plane.tick()
    return Reconciled(found, leader)


def main(environment: RouterEnvironment) -> NoReturn:
    from kubernetes import client, config

    config.load_incluster_config()
    api = KubernetesClusterApi(client.CoreV1Api(), client.DiscoveryV1Api())
    settings = environment.router_settings()
    writer = ConfigWriter(settings.config_dir)
    writer.write_bootstrap(settings)
    leases = KubernetesLeases(client.CoordinationV1Api(), environment.namespace, LEASE_NAME)
    elector = LeaderElector(socket.gethostname(), leases, time.time)
    scaler = KubernetesScaler(client.AppsV1Api(), {})
    plane = ControlPlane([], scaler, [])
    start_http_server(environment.metrics_port, registry=plane.registry)
    while True:
        reconcile_once(api, writer, elector, plane, scaler, settings, environment)
        time.sleep(RECONCILE_SECONDS)
