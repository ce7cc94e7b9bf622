"""In-cluster control plane: discover model services, write Envoy's files, and (as leader) scale.

Runs next to Envoy in each router pod, sharing the config directory (an emptyDir).
Discovery polls the API every refresh tick (list calls are cheap at model-service
scale and need no long-lived watches); see router/discovery.py for the contract.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace

from prometheus_client import start_http_server

from router.actuators import KubernetesScaler
from router.controlplane import ControlPlane, ManagedService
from router.discovery import MODEL_SERVICE_LABEL, SERVICE_NAME_LABEL, discover
from router.environment import RouterEnvironment
from router.envoy_files import ConfigWriter
from router.leader import KubernetesLeases, LeaderElector
from router.metrics import Load, collect


def as_api_dicts(object_list) -> list[dict]:
    """Client objects -> the API's own JSON shape (camelCase), which the discovery contract reads."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(object_list).get("items", [])


def main(environment: RouterEnvironment) -> int:
    from kubernetes import client, config

    config.load_incluster_config()
    core, discovery_api = client.CoreV1Api(), client.DiscoveryV1Api()
    apps, coordination = client.AppsV1Api(), client.CoordinationV1Api()
    namespaces, own_namespace, router_service = environment.model_namespaces, environment.namespace, environment.router_service
    settings = environment.router_settings()
    writer = ConfigWriter(settings.config_dir)
    writer.write_bootstrap(settings)
    elector = LeaderElector(socket.gethostname(), KubernetesLeases(coordination, own_namespace, "aks-inference-autoscaler"), time.time)
    scaler = KubernetesScaler(apps, {})
    plane = ControlPlane([], scaler, [])
    start_http_server(environment.metrics_port, registry=plane.registry)
    stop = threading.Event()
    while not stop.is_set():
        services, slices, secrets = [], [], []
        for namespace in namespaces:
            services += as_api_dicts(core.list_namespaced_service(namespace, label_selector=f"{MODEL_SERVICE_LABEL}=true"))
            slices += as_api_dicts(discovery_api.list_namespaced_endpoint_slice(namespace))
            secrets += as_api_dicts(core.list_namespaced_secret(namespace, label_selector=f"{MODEL_SERVICE_LABEL}=true"))
        found = discover(services, slices, secrets)
        # Each replica sizes its queues from the service times its own Envoy observes.
        observed = collect([f"http://127.0.0.1:{settings.admin_port}"])
        writer.write([replace(d.route, latency_ms=observed.get(d.route.cluster_name, Load()).latency_ms) for d in found], settings)
        if elector.try_acquire_or_renew():
            scaler.deployments = {d.route.name: (d.route.namespace, d.deployment) for d in found}
            peers = discovery_api.list_namespaced_endpoint_slice(own_namespace, label_selector=f"{SERVICE_NAME_LABEL}={router_service}")
            admin_urls = [
                f"http://{address}:{settings.admin_port}"
                for s in peers.items for e in (s.endpoints or []) for address in (e.addresses or [])
            ]
            plane.set_services([ManagedService(d.route.name, d.route.cluster_name, d.autoscale) for d in found])
            plane.admin_urls = admin_urls
            plane.tick()
        stop.wait(1.0)
    return 0
