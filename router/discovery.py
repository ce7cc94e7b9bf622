"""The discovery contract between the Kubernetes objects of a model service and the router.

A model service is a Kubernetes Service labelled `aks-inference/model-service: "true"`
whose annotations carry what azureml-fe needs to route and scale it:

  aks-inference/service-name         the Azure ML v1 service name (the URL segment)
  aks-inference/auth                 key | token | none
  aks-inference/keys-secret          Secret (same namespace) with data keys primaryKey, secondaryKey
  aks-inference/scoring-timeout-ms   scoringTimeoutMs
  aks-inference/max-concurrent       maxConcurrentRequestsPerContainer
  aks-inference/max-queue-wait-ms    maxQueueWaitMs
  aks-inference/deployment           the Deployment the autoscaler scales (deployments/scale)
  aks-inference/autoscale            JSON {"enabled", "min", "max", "targetUtilization", "refreshSeconds",
                                     "scaleDownWindowSeconds", "fixed"} (fixed = replicas when autoscaling is off)

Replicas come from the EndpointSlices of that Service (label kubernetes.io/service-name):
every endpoint whose `conditions.ready` is true, on the port named `http`.
These functions are pure (object dicts in, routes out) so both sides of the contract
are tested without an API server.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from router.autoscaler import AutoscaleSettings
from router.spec import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_QUEUE_WAIT_MS,
    DEFAULT_SCORING_TIMEOUT_MS,
    Endpoint,
    ServiceRoute,
)

ROUTER_APP = "aks-inference-router"  # the router's Deployment, Service and pod label app.kubernetes.io/name
ROUTER_NAMESPACE = "aks-inference"
PREFIX = "aks-inference/"
MODEL_SERVICE_LABEL = PREFIX + "model-service"
SERVICE_NAME = PREFIX + "service-name"
AUTH = PREFIX + "auth"
KEYS_SECRET = PREFIX + "keys-secret"
SCORING_TIMEOUT_MS = PREFIX + "scoring-timeout-ms"
MAX_CONCURRENT = PREFIX + "max-concurrent"
MAX_QUEUE_WAIT_MS = PREFIX + "max-queue-wait-ms"
DEPLOYMENT = PREFIX + "deployment"
AUTOSCALE = PREFIX + "autoscale"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PORT_NAME = "http"
SECRET_KEYS = ("primaryKey", "secondaryKey")


@dataclass(frozen=True)
class DiscoveredService:
    route: ServiceRoute
    deployment: str
    autoscale: AutoscaleSettings


def annotations_for(
    route: ServiceRoute, *, deployment: str, autoscale: AutoscaleSettings, keys_secret: str | None
) -> dict[str, str]:
    """The annotations a model Service must carry (used by the deployer; the inverse of `discover`)."""
    annotations = {
        SERVICE_NAME: route.name,
        AUTH: route.auth,
        SCORING_TIMEOUT_MS: str(route.scoring_timeout_ms),
        MAX_CONCURRENT: str(route.max_concurrent),
        MAX_QUEUE_WAIT_MS: str(route.max_queue_wait_ms),
        DEPLOYMENT: deployment,
        AUTOSCALE: json.dumps(
            {
                "enabled": autoscale.enabled,
                "min": autoscale.min_replicas,
                "max": autoscale.max_replicas,
                "targetUtilization": autoscale.target_utilization,
                "refreshSeconds": autoscale.refresh_seconds,
                "scaleDownWindowSeconds": autoscale.scale_down_window_seconds,
                "fixed": autoscale.fixed_replicas,
            },
            sort_keys=True,
        ),
    }
    if keys_secret:
        annotations[KEYS_SECRET] = keys_secret
    return annotations


def _secret_keys(secret: dict | None) -> tuple[str, ...]:
    if not secret:
        return ()
    data = secret.get("data") or {}
    plain = secret.get("stringData") or {}
    keys = []
    for field in SECRET_KEYS:
        if field in plain:
            keys.append(plain[field])
        elif field in data:
            keys.append(base64.b64decode(data[field]).decode())
    return tuple(k for k in keys if k)


def _endpoints(slices: list[dict]) -> tuple[Endpoint, ...]:
    found = set()
    for endpoint_slice in slices:
        ports = [p["port"] for p in endpoint_slice.get("ports") or [] if p.get("name") == PORT_NAME]
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is not True:
                continue
            for address in endpoint.get("addresses") or []:
                found.update(Endpoint(address, port) for port in ports)
    return tuple(sorted(found))


def discover(services: list[dict], endpoint_slices: list[dict], secrets: list[dict]) -> list[DiscoveredService]:
    """Kubernetes objects (as dicts) -> what the router serves and scales. Objects without the label are ignored."""
    secrets_by_key = {(s["metadata"].get("namespace"), s["metadata"]["name"]): s for s in secrets}
    discovered = []
    for service in services:
        meta = service["metadata"]
        if (meta.get("labels") or {}).get(MODEL_SERVICE_LABEL) != "true":
            continue
        annotations = meta.get("annotations") or {}
        namespace = meta.get("namespace", "default")
        slices = [
            s for s in endpoint_slices
            if s["metadata"].get("namespace", "default") == namespace
            and (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == meta["name"]
        ]
        scale = json.loads(annotations.get(AUTOSCALE, "{}"))
        route = ServiceRoute(
            name=annotations.get(SERVICE_NAME, meta["name"]),
            namespace=namespace,
            auth=annotations.get(AUTH, "key"),
            keys=_secret_keys(secrets_by_key.get((namespace, annotations.get(KEYS_SECRET)))),
            scoring_timeout_ms=int(annotations.get(SCORING_TIMEOUT_MS, DEFAULT_SCORING_TIMEOUT_MS)),
            max_concurrent=int(annotations.get(MAX_CONCURRENT, DEFAULT_MAX_CONCURRENT)),
            max_queue_wait_ms=int(annotations.get(MAX_QUEUE_WAIT_MS, DEFAULT_MAX_QUEUE_WAIT_MS)),
            endpoints=_endpoints(slices),
        )
        autoscale = AutoscaleSettings(
            enabled=bool(scale.get("enabled", True)),
            min_replicas=int(scale.get("min", 1)),
            max_replicas=int(scale.get("max", 10)),
            target_utilization=float(scale.get("targetUtilization", 0.7)),
            refresh_seconds=float(scale.get("refreshSeconds", 1)),
            scale_down_window_seconds=float(scale.get("scaleDownWindowSeconds", 60)),
            max_concurrent=route.max_concurrent,
            fixed_replicas=int(scale.get("fixed", scale.get("min", 1))),
        )
        discovered.append(DiscoveredService(route, annotations.get(DEPLOYMENT, meta["name"]), autoscale))
    return sorted(discovered, key=lambda d: (d.route.namespace, d.route.name))
