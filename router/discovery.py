"""The discovery contract between the Kubernetes objects of a model service and the router.

A model service is a Kubernetes Service labelled `aks-inference/model-service: "true"`
whose annotations carry what azureml-fe needs to route and scale it:

  aks-inference/service-name         the Azure ML v1 service name (the URL segment)
  aks-inference/auth                 exactly key | token | none (anything else is refused)
  aks-inference/keys-secret          Secret (same namespace) with data keys primaryKey, secondaryKey
  aks-inference/scoring-timeout-ms   scoringTimeoutMs
  aks-inference/max-concurrent       maxConcurrentRequestsPerContainer
  aks-inference/max-queue-wait-ms    maxQueueWaitMs
  aks-inference/deployment           the Deployment the autoscaler scales (deployments/scale)
  aks-inference/autoscale            JSON {"enabled", "min", "max", "targetUtilization", "refreshSeconds",
                                     "scaleDownWindowSeconds", "fixed"} (fixed = replicas when autoscaling is off)
  aks-inference/token-authorization  token services only: JSON {"requiredRoles": [..], "allowedClientIds": [..],
                                     "audience": ".."} (deploymentconfig.json's tokenAuthorization; absent: none)

Replicas come from the EndpointSlices of that Service (label kubernetes.io/service-name):
every endpoint whose `conditions.ready` is true, on the port named `http`.
Keys come from the Secret the Service names, read by name (`named_secrets` lists them), so the
router's Role can grant `get` on exactly those Secrets.

A Service the router cannot serve as annotated (an annotation it cannot read, a value out of
bounds, an auth other than exactly key/token/none, a service name or cluster another Service also
claims) is still discovered, but refused: its route carries the problems, each naming the annotation
and its value, and renders as a JSON 503 naming them (403 for an invalid auth) with no cluster; it is
never scaled. `discover` raises for nothing a Service, EndpointSlice or Secret holds, and one
Service's values never affect another's route.

These functions are pure (object dicts in, routes out) so both sides of the contract
are tested without an API server.
"""

from __future__ import annotations

import base64
import json
import re
from collections import defaultdict
from dataclasses import dataclass, replace

from router.autoscaler import AutoscaleSettings
from router.spec import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_QUEUE_WAIT_MS,
    DEFAULT_SCORING_TIMEOUT_MS,
    INT32_MAX,
    Endpoint,
    ServiceRoute,
    TokenAuthorization,
    refuse_unsafe,
    route_problems,
    shown,
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
TOKEN_AUTHORIZATION = PREFIX + "token-authorization"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PORT_NAME = "http"
SECRET_KEYS = ("primaryKey", "secondaryKey")
# Where each route field comes from, so a problem names what a user wrote.
ANNOTATION_OF = {
    "name": SERVICE_NAME,
    "auth": AUTH,
    "keys": KEYS_SECRET,
    "scoring_timeout_ms": SCORING_TIMEOUT_MS,
    "max_concurrent": MAX_CONCURRENT,
    "max_queue_wait_ms": MAX_QUEUE_WAIT_MS,
    "endpoints": f"EndpointSlice port {PORT_NAME!r}",
    "token_authorization": TOKEN_AUTHORIZATION,
}
# The token-authorization annotation's keys (deploymentconfig.json's) -> TokenAuthorization fields.
TOKEN_AUTHORIZATION_KEYS = {"requiredRoles": "required_roles", "allowedClientIds": "allowed_client_ids", "audience": "audience"}
_OBJECT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")  # a Kubernetes object name (DNS subdomain)
_WHOLE_NUMBER = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class DiscoveredService:
    route: ServiceRoute  # refused (route.problems) when the Service cannot be served as annotated
    deployment: str
    autoscale: AutoscaleSettings
    source: str  # the Kubernetes Service it was read from, "<namespace>/<name>"


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
    rules = route.token_authorization
    if rules:
        written = {key: getattr(rules, field) for key, field in TOKEN_AUTHORIZATION_KEYS.items()}
        annotations[TOKEN_AUTHORIZATION] = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in written.items() if v}, sort_keys=True)
    return annotations


def named_secrets(services: list[dict]) -> list[tuple[str, str]]:
    """(namespace, name) of every key Secret a model Service names: the only Secrets the router reads."""
    named = set()
    for service in services:
        meta = service["metadata"]
        secret = (meta.get("annotations") or {}).get(KEYS_SECRET)
        if _is_model_service(service) and secret is not None and _OBJECT_NAME.fullmatch(secret):
            named.add((meta.get("namespace", "default"), secret))
    return sorted(named)


def discover(services: list[dict], endpoint_slices: list[dict], secrets: list[dict]) -> list[DiscoveredService]:
    """Kubernetes objects (as dicts) -> what the router serves and scales. Objects without the label are ignored;
    a Service that cannot be served as annotated is returned refused (see the module docstring)."""
    secrets_by_name = {(s["metadata"].get("namespace", "default"), s["metadata"]["name"]): s for s in secrets}
    slices_by_service: dict[tuple[str, str | None], list[dict]] = defaultdict(list)
    for endpoint_slice in endpoint_slices:
        meta = endpoint_slice["metadata"]
        slices_by_service[(meta.get("namespace", "default"), (meta.get("labels") or {}).get(SERVICE_NAME_LABEL))].append(endpoint_slice)
    read = [_read(service, slices_by_service, secrets_by_name) for service in services if _is_model_service(service)]
    checked = refuse_unsafe(d.route for d in read)  # names and clusters claimed twice
    found = [replace(d, route=route) for d, route in zip(read, checked, strict=True)]
    return sorted(found, key=lambda d: (d.route.namespace, d.route.name, d.source))


def _is_model_service(service: dict) -> bool:
    return (service["metadata"].get("labels") or {}).get(MODEL_SERVICE_LABEL) == "true"


def _read(service: dict, slices_by_service: dict[tuple[str, str | None], list[dict]], secrets: dict[tuple[str, str], dict]) -> DiscoveredService:
    meta = service["metadata"]
    namespace = meta.get("namespace", "default")
    annotations = meta.get("annotations") or {}
    problems: list[str] = []
    route = ServiceRoute(
        name=annotations.get(SERVICE_NAME, meta["name"]),
        namespace=namespace,
        auth=annotations.get(AUTH, "key"),
        keys=_keys(namespace, annotations.get(KEYS_SECRET), secrets, problems),
        scoring_timeout_ms=_whole_number(annotations, SCORING_TIMEOUT_MS, DEFAULT_SCORING_TIMEOUT_MS, problems),
        max_concurrent=_whole_number(annotations, MAX_CONCURRENT, DEFAULT_MAX_CONCURRENT, problems),
        max_queue_wait_ms=_whole_number(annotations, MAX_QUEUE_WAIT_MS, DEFAULT_MAX_QUEUE_WAIT_MS, problems),
        endpoints=_endpoints(slices_by_service.get((namespace, meta["name"]), [])),
        token_authorization=_token_authorization(annotations.get(TOKEN_AUTHORIZATION), problems),
    )
    autoscale = _autoscale(annotations.get(AUTOSCALE), route.max_concurrent, problems)
    deployment = annotations.get(DEPLOYMENT, meta["name"])
    if not _OBJECT_NAME.fullmatch(deployment):
        problems.append(f"{DEPLOYMENT}={shown(deployment)} is not a Deployment name")
    problems += route_problems(route, ANNOTATION_OF)
    return DiscoveredService(replace(route, problems=tuple(problems)), deployment, autoscale, f"{namespace}/{meta['name']}")


def _whole_number(annotations: dict[str, str], annotation: str, default: int, problems: list[str]) -> int:
    """The annotation's number (bounds are `route_problems`' to check); the default, and a problem, if it is not one."""
    raw = annotations.get(annotation)
    if raw is None:
        return default
    if not _WHOLE_NUMBER.fullmatch(raw):
        problems.append(f"{annotation}={shown(raw)} is not a whole number")
        return default
    return int(raw)


def _autoscale(raw: str | None, max_concurrent: int, problems: list[str]) -> AutoscaleSettings:
    """The autoscale annotation; a field it cannot use keeps its default, with a problem naming it."""
    scale: object = {}
    if raw is not None:
        try:
            scale = json.loads(raw)
        except (ValueError, RecursionError):
            problems.append(f"{AUTOSCALE}={shown(raw)} is not JSON")
    if not isinstance(scale, dict):
        problems.append(f"{AUTOSCALE}={shown(raw)} is not a JSON object")
        scale = {}

    def setting(key: str, default: float, valid, rule: str):
        value = scale.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):  # NaN is never valid
            problems.append(f"{AUTOSCALE} {key}={shown(value)} {rule}")
            return default
        return value

    def replicas(value: float) -> bool:
        return isinstance(value, int) and 1 <= value <= INT32_MAX

    replica_rule = f"must be a whole number from 1 to {INT32_MAX}"
    enabled = scale.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(f"{AUTOSCALE} enabled={shown(enabled)} must be true or false")
        enabled = True
    min_replicas = setting("min", 1, replicas, replica_rule)
    max_replicas = setting("max", 10, replicas, replica_rule)
    if min_replicas > max_replicas:
        problems.append(f"{AUTOSCALE} min={min_replicas} is above max={max_replicas}")
    return AutoscaleSettings(
        enabled=enabled,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_utilization=float(setting("targetUtilization", 0.7, lambda v: 0 < v <= 1, "must be a fraction above 0, at most 1")),
        refresh_seconds=float(setting("refreshSeconds", 1, lambda v: 0 < v <= INT32_MAX, "must be a number of seconds above 0")),
        scale_down_window_seconds=float(setting("scaleDownWindowSeconds", 60, lambda v: 0 <= v <= INT32_MAX, "must be a number of seconds, 0 or more")),
        max_concurrent=max_concurrent,
        fixed_replicas=setting("fixed", min_replicas, replicas, replica_rule),
    )


def _token_authorization(raw: str | None, problems: list[str]) -> TokenAuthorization:
    """The token-authorization annotation; what it cannot hold is a problem (the service is refused, never
    served with fewer rules). Value shapes, and auth being token, are `route_problems`' to check."""
    if raw is None:
        return TokenAuthorization()
    try:
        given = json.loads(raw)
    except (ValueError, RecursionError):
        problems.append(f"{TOKEN_AUTHORIZATION}={shown(raw)} is not JSON")
        return TokenAuthorization()
    if not isinstance(given, dict):
        problems.append(f"{TOKEN_AUTHORIZATION}={shown(raw)} is not a JSON object")
        return TokenAuthorization()
    unknown = sorted(set(given) - TOKEN_AUTHORIZATION_KEYS.keys())
    if unknown:
        problems.append(f"{TOKEN_AUTHORIZATION}: unknown keys {shown(unknown)}; allowed: {', '.join(TOKEN_AUTHORIZATION_KEYS)}")
    values: dict = {}
    for key in ("requiredRoles", "allowedClientIds"):
        listed = given.get(key, [])
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            problems.append(f"{TOKEN_AUTHORIZATION} {key}={shown(listed)} must be a list of strings")
            listed = []
        values[TOKEN_AUTHORIZATION_KEYS[key]] = tuple(listed)
    audience = given.get("audience")
    if audience is not None and not isinstance(audience, str):
        problems.append(f"{TOKEN_AUTHORIZATION} audience={shown(audience)} must be a string")
        audience = None
    return TokenAuthorization(**values, audience=audience)


def _keys(namespace: str, secret_name: str | None, secrets: dict[tuple[str, str], dict], problems: list[str]) -> tuple[str, ...]:
    """The keys in the named Secret; none while it does not exist (a key service then refuses every key)."""
    if secret_name is None:
        return ()
    if not _OBJECT_NAME.fullmatch(secret_name):
        problems.append(f"{KEYS_SECRET}={shown(secret_name)} is not a Secret name")
        return ()
    secret = secrets.get((namespace, secret_name)) or {}
    data = secret.get("data") or {}
    plain = secret.get("stringData") or {}
    keys = []
    for field in SECRET_KEYS:
        if field in plain:
            keys.append(plain[field])
        elif field in data:
            try:
                keys.append(base64.b64decode(data[field], validate=True).decode())
            except ValueError:  # binascii.Error and UnicodeDecodeError both are
                problems.append(f"Secret {namespace}/{secret_name}: {field} is not base64-encoded UTF-8")
    return tuple(k for k in keys if k)


def _endpoints(slices: list[dict]) -> tuple[Endpoint, ...]:
    found = set()
    for endpoint_slice in slices:
        ports = [p["port"] for p in endpoint_slice.get("ports") or [] if p.get("name") == PORT_NAME and p.get("port") is not None]
        for endpoint in endpoint_slice.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is not True:
                continue
            for address in endpoint.get("addresses") or []:
                found.update(Endpoint(address, port) for port in ports)
    return tuple(sorted(found))
