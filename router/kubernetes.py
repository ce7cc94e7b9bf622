"""In-cluster control plane: discover model services, write Envoy's files, and (as leader) scale.

Runs next to Envoy in each router pod, sharing the config directory (an emptyDir).
Discovery polls the API every refresh tick (list calls are cheap at model-service
scale and need no long-lived watches); see router/discovery.py for the contract.
"""

from __future__ import annotations

import os
from dataclasses import replace
import socket
import threading
import time
from pathlib import Path

from prometheus_client import start_http_server

from router.actuators import KubernetesScaler
from router.controlplane import ControlPlane, ManagedService
from router.discovery import MODEL_SERVICE_LABEL, ROUTER_APP, ROUTER_NAMESPACE, SERVICE_NAME_LABEL, discover
from router.envoy import ConfigWriter
from router.metrics import Load, collect
from router.leader import KubernetesLeases, LeaderElector
from router.spec import JwtSettings, RouterSettings, TlsSettings


def _settings() -> RouterSettings:
    tls_dir = Path(os.environ.get("AKSINF_TLS_DIR", "/etc/aks-inference/tls"))
    tls = TlsSettings(str(tls_dir / "tls.crt"), str(tls_dir / "tls.key")) if (tls_dir / "tls.crt").exists() else None
    jwt = None
    if os.environ.get("AKSINF_JWT_ISSUER"):
        jwt = JwtSettings(os.environ["AKSINF_JWT_ISSUER"], (os.environ["AKSINF_JWT_AUDIENCE"],), jwks_uri=os.environ["AKSINF_JWKS_URI"])
    return RouterSettings(
        config_dir=Path(os.environ.get("AKSINF_CONFIG_DIR", "/etc/envoy/dynamic")),
        listen_host="0.0.0.0",  # in a pod: the Service routes to the pod IP
        listen_port=int(os.environ.get("AKSINF_LISTEN_PORT", "8443" if tls else "8080")),
        admin_port=int(os.environ.get("AKSINF_ADMIN_PORT", "9901")),
        admin_host="0.0.0.0",  # peers read each other's gauges; the NetworkPolicy admits only router pods
        jwt=jwt,
        tls=tls,
    )


def as_api_dicts(object_list) -> list[dict]:
    """Client objects -> the API's own JSON shape (camelCase), which the discovery contract reads."""
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(object_list).get("items", [])


def main() -> int:
    from kubernetes import client, config

    config.load_incluster_config()
    core, discovery_api = client.CoreV1Api(), client.DiscoveryV1Api()
    apps, coordination = client.AppsV1Api(), client.CoordinationV1Api()
    namespaces = [n for n in os.environ.get("AKSINF_MODEL_NAMESPACES", "models").split(",") if n]
    own_namespace = os.environ.get("AKSINF_NAMESPACE", ROUTER_NAMESPACE)
    router_service = os.environ.get("AKSINF_ROUTER_SERVICE", ROUTER_APP)
    settings = _settings()
    writer = ConfigWriter(settings.config_dir)
    writer.write_bootstrap(settings)
    elector = LeaderElector(socket.gethostname(), KubernetesLeases(coordination, own_namespace, "aks-inference-autoscaler"), time.time)
    scaler = KubernetesScaler(apps, {})
    plane = ControlPlane([], scaler, [])
    start_http_server(int(os.environ.get("AKSINF_METRICS_PORT", "9090")), registry=plane.registry)
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
