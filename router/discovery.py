"""The discovery contract between the Kubernetes objects of a model service and the router.

A model service is a Kubernetes Service labelled `aks-inference/model-service: "true"`
whose annotations carry what azureml-fe needs to route and scale it:

  aks-inference/service-name         the Azure ML v1 service name (the URL segment)
  aks-inference/auth                 exactly key | token | none (anything else is refused)
  aks-inference/keys-secret          Secret (same namespace) with data keys primaryKey, secondaryKey
  aks-inference/scoring-timeout-ms   scoringTimeoutMs
  aks-inference/max-concurrent       maxConcurrentRequestsPerContainer
  aks-inference/max-queue-wait-ms    maxQueueWaitMs
  aks-inference/expected-service-time-ms  expectedServiceTimeMs (optional): the service time assumed until one
                                     is measured, 1..scoring-timeout-ms (absent: the router-wide prior)
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

Versioned endpoints (Azure ML v1's AksEndpoint; the annotations are listed beside their constants below):
a version is a model Service as above plus `aks-inference/endpoint` (its route then has `endpoint` set:
router/envoy_config.py serves it only through that endpoint). The endpoint is a Service without selector
labelled `aks-inference/model-service` and `aks-inference/model-endpoint` "true", read by
`discover_endpoints` (never by `discover`) into an EndpointRoute: its name and auth exactly as a service's,
VERSIONS with weights computed (a non-default version answers its trafficPercentile, the default the rest),
ROLLOUT as router/canary.py's RolloutPolicy, and a `revision` hashing both values (the router-owned live
split of another revision is dropped). An endpoint it cannot read, or that would send clients to a version
that cannot serve them, is refused the same way (router/spec.py: `endpoint_problems`); a shadow that cannot
serve is only not mirrored. `endpoint_annotations` is the inverse, for the deployer.

These functions are pure (object dicts in, routes out) so both sides of the contract
are tested without an API server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from router.autoscaler import AutoscaleSettings
from router.canary import RolloutPolicy
from router.spec import (
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_MAX_QUEUE_WAIT_MS,
    DEFAULT_SCORING_TIMEOUT_MS,
    INT32_MAX,
    MAX_ENDPOINT_VERSIONS,
    PERCENT,
    VERSION_TYPES,
    Endpoint,
    EndpointRoute,
    ServiceRoute,
    TokenAuthorization,
    VersionShare,
    endpoint_problems,
    refuse_unsafe,
    refuse_unsafe_endpoints,
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
EXPECTED_SERVICE_TIME_MS = PREFIX + "expected-service-time-ms"
DEPLOYMENT = PREFIX + "deployment"
AUTOSCALE = PREFIX + "autoscale"
TOKEN_AUTHORIZATION = PREFIX + "token-authorization"
# Versioned endpoints. A version is a model Service like any other (its own Deployment, replicas, limits and
# autoscaling) that also carries ENDPOINT = the endpoint's name: it is served only through that endpoint.
# The endpoint is a Service without selector (no pods), labelled MODEL_SERVICE_LABEL and ENDPOINT_LABEL, with the endpoint's
# SERVICE_NAME, AUTH, KEYS_SECRET and TOKEN_AUTHORIZATION, and:
#   aks-inference/versions  JSON [{"name", "trafficPercentile" (null on the default), "isDefault",
#                           "versionType": "control"|"treatment", "mirrorPercentile"}], in `versions` order
#   aks-inference/rollout   JSON {"steps", "analysisWindowSeconds", "maxServerErrorRate",
#                           "maxP99LatencyRatio", "minRequests"} (optional: automated canary analysis)
# A traffic change is a change of the endpoint object alone.
ENDPOINT = PREFIX + "endpoint"
ENDPOINT_LABEL = PREFIX + "model-endpoint"  # "true" on the endpoint Service (which also has MODEL_SERVICE_LABEL)
VERSIONS = PREFIX + "versions"
ROLLOUT = PREFIX + "rollout"
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
    "expected_service_time_ms": EXPECTED_SERVICE_TIME_MS,
    "endpoints": f"EndpointSlice port {PORT_NAME!r}",
    "token_authorization": TOKEN_AUTHORIZATION,
    "endpoint": ENDPOINT,
}
ENDPOINT_ANNOTATION_OF = {"name": SERVICE_NAME, "auth": AUTH, "keys": KEYS_SECRET, "token_authorization": TOKEN_AUTHORIZATION, "versions": VERSIONS}
# The keys of one VERSIONS entry (contract/endpoints.py: EndpointVersion), and of ROLLOUT (RolloutPolicy) with their defaults.
VERSION_KEYS = ("name", "trafficPercentile", "isDefault", "versionType", "mirrorPercentile")
ROLLOUT_DEFAULTS = {"steps": None, "analysisWindowSeconds": 300, "maxServerErrorRate": 0.01, "maxP99LatencyRatio": 1.5, "minRequests": 100}
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


@dataclass(frozen=True)
class DiscoveredEndpoint:
    route: EndpointRoute  # refused (route.problems) when the endpoint cannot be served as annotated
    rollout: RolloutPolicy | None  # automated canary analysis; None without ROLLOUT, or when refused
    revision: str  # hashes the VERSIONS and ROLLOUT values: a live split of another revision is dropped
    source: str  # the Kubernetes Service it was read from, "<namespace>/<name>"


def annotations_for(
    route: ServiceRoute, *, deployment: str, autoscale: AutoscaleSettings, keys_secret: str | None
) -> dict[str, str]:
    """The annotations a model Service must carry (used by the deployer; the inverse of `discover`). A
    version of an endpoint (`route.endpoint`) also carries ENDPOINT."""
    annotations = {
        **_access_annotations(route, keys_secret),
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
    if route.expected_service_time_ms is not None:
        annotations[EXPECTED_SERVICE_TIME_MS] = str(route.expected_service_time_ms)
    if route.endpoint is not None:
        annotations[ENDPOINT] = route.endpoint
    return annotations


def endpoint_annotations(endpoint: EndpointRoute, *, keys_secret: str | None, rollout: RolloutPolicy | None = None) -> dict[str, str]:
    """The annotations an endpoint Service carries (used by the deployer; the inverse of `discover_endpoints`).
    The Service also has the labels MODEL_SERVICE_LABEL and ENDPOINT_LABEL "true", and no selector.
    VERSIONS keeps `endpoint.versions`' order; the default's trafficPercentile is null (it takes the rest)."""
    versions = [
        {"name": v.version, "trafficPercentile": None if v.is_default else v.weight, "isDefault": v.is_default,
         "versionType": v.version_type, "mirrorPercentile": v.mirror_percent}
        for v in endpoint.versions
    ]
    annotations = {**_access_annotations(endpoint, keys_secret), VERSIONS: json.dumps(versions)}
    if rollout is not None:
        annotations[ROLLOUT] = json.dumps(
            {"steps": list(rollout.steps), "analysisWindowSeconds": rollout.window_seconds, "maxServerErrorRate": rollout.max_server_error_rate,
             "maxP99LatencyRatio": rollout.max_p99_latency_ratio, "minRequests": rollout.min_requests},
            sort_keys=True,
        )
    return annotations


def _access_annotations(item: ServiceRoute | EndpointRoute, keys_secret: str | None) -> dict[str, str]:
    """Name and auth, as a service and an endpoint both carry them."""
    annotations = {SERVICE_NAME: item.name, AUTH: item.auth}
    if keys_secret:
        annotations[KEYS_SECRET] = keys_secret
    rules = item.token_authorization
    if rules:
        written = {key: getattr(rules, field) for key, field in TOKEN_AUTHORIZATION_KEYS.items()}
        annotations[TOKEN_AUTHORIZATION] = json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in written.items() if v}, sort_keys=True)
    return annotations


def named_secrets(services: list[dict]) -> list[tuple[str, str]]:
    """(namespace, name) of every key Secret a model Service names, endpoint Services included (they are
    model Services too): the only Secrets the router reads."""
    named = set()
    for service in services:
        meta = service["metadata"]
        secret = (meta.get("annotations") or {}).get(KEYS_SECRET)
        if _is_model_service(service) and secret is not None and _OBJECT_NAME.fullmatch(secret):
            named.add((meta.get("namespace", "default"), secret))
    return sorted(named)


def discover(services: list[dict], endpoint_slices: list[dict], secrets: list[dict]) -> list[DiscoveredService]:
    """Kubernetes objects (as dicts) -> what the router serves and scales. Objects without the label are ignored;
    a Service that cannot be served as annotated is returned refused (see the module docstring). Endpoint
    Services are `discover_endpoints`' to read; a service claiming an endpoint's name is refused here."""
    secrets_by_name = _secrets_by_name(secrets)
    slices_by_service: dict[tuple[str, str | None], list[dict]] = defaultdict(list)
    for endpoint_slice in endpoint_slices:
        meta = endpoint_slice["metadata"]
        slices_by_service[(meta.get("namespace", "default"), (meta.get("labels") or {}).get(SERVICE_NAME_LABEL))].append(endpoint_slice)
    models = [service for service in services if _is_model_service(service)]
    read = [_read(service, slices_by_service, secrets_by_name) for service in models if not _is_endpoint(service)]
    endpoints = [EndpointRoute(*_name_and_namespace(service)) for service in models if _is_endpoint(service)]
    checked = refuse_unsafe((d.route for d in read), endpoints)  # names and clusters claimed twice
    found = [replace(d, route=route) for d, route in zip(read, checked, strict=True)]
    return sorted(found, key=lambda d: (d.route.namespace, d.route.name, d.source))


def discover_endpoints(services: list[dict], secrets: list[dict], found: Iterable[DiscoveredService]) -> list[DiscoveredEndpoint]:
    """Endpoint Services (labels MODEL_SERVICE_LABEL and ENDPOINT_LABEL) -> the endpoints the router serves,
    checked against `found` (what `discover` made of the same objects: the versions). An endpoint that cannot
    be served as annotated is returned refused, with keyed problems and no rollout; nothing here raises, and
    one endpoint's values never affect another endpoint or any service."""
    routes = [d.route for d in found]
    versions = {route.name: route for route in routes}
    secrets_by_name = _secrets_by_name(secrets)
    read = [_read_endpoint(service, secrets_by_name, versions) for service in services if _is_model_service(service) and _is_endpoint(service)]
    checked = refuse_unsafe_endpoints((d.route for d in read), routes)  # names claimed twice
    endpoints = [replace(d, route=route, rollout=None if route.problems else d.rollout) for d, route in zip(read, checked, strict=True)]
    return sorted(endpoints, key=lambda d: (d.route.namespace, d.route.name, d.source))


def _secrets_by_name(secrets: list[dict]) -> dict[tuple[str, str], dict]:
    return {(s["metadata"].get("namespace", "default"), s["metadata"]["name"]): s for s in secrets}


def _is_model_service(service: dict) -> bool:
    return (service["metadata"].get("labels") or {}).get(MODEL_SERVICE_LABEL) == "true"


def _is_endpoint(service: dict) -> bool:
    return (service["metadata"].get("labels") or {}).get(ENDPOINT_LABEL) == "true"


def _name_and_namespace(service: dict) -> tuple[str, str]:
    meta = service["metadata"]
    return (meta.get("annotations") or {}).get(SERVICE_NAME, meta["name"]), meta.get("namespace", "default")


def _access(service: dict, secrets: dict[tuple[str, str], dict], problems: list[str]) -> dict[str, Any]:
    """Name and auth, as a service and an endpoint both read them (the inverse of `_access_annotations`)."""
    annotations = service["metadata"].get("annotations") or {}
    name, namespace = _name_and_namespace(service)
    return {
        "name": name,
        "namespace": namespace,
        "auth": annotations.get(AUTH, "key"),
        "keys": _keys(namespace, annotations.get(KEYS_SECRET), secrets, problems),
        "token_authorization": _token_authorization(annotations.get(TOKEN_AUTHORIZATION), problems),
    }


def _read(service: dict, slices_by_service: dict[tuple[str, str | None], list[dict]], secrets: dict[tuple[str, str], dict]) -> DiscoveredService:
    meta = service["metadata"]
    annotations = meta.get("annotations") or {}
    problems: list[str] = []
    access = _access(service, secrets, problems)
    namespace = access["namespace"]
    route = ServiceRoute(
        **access,
        scoring_timeout_ms=_whole_number(annotations, SCORING_TIMEOUT_MS, DEFAULT_SCORING_TIMEOUT_MS, problems),
        max_concurrent=_whole_number(annotations, MAX_CONCURRENT, DEFAULT_MAX_CONCURRENT, problems),
        max_queue_wait_ms=_whole_number(annotations, MAX_QUEUE_WAIT_MS, DEFAULT_MAX_QUEUE_WAIT_MS, problems),
        expected_service_time_ms=_whole_number(annotations, EXPECTED_SERVICE_TIME_MS, None, problems),
        endpoints=_endpoints(slices_by_service.get((namespace, meta["name"]), [])),
        endpoint=annotations.get(ENDPOINT),
    )
    autoscale = _autoscale(annotations.get(AUTOSCALE), route.max_concurrent, problems)
    deployment = annotations.get(DEPLOYMENT, meta["name"])
    if not _OBJECT_NAME.fullmatch(deployment):
        problems.append(f"{DEPLOYMENT}={shown(deployment)} is not a Deployment name")
    problems += route_problems(route, ANNOTATION_OF)
    return DiscoveredService(replace(route, problems=tuple(problems)), deployment, autoscale, f"{namespace}/{meta['name']}")


def _read_endpoint(service: dict, secrets: dict[tuple[str, str], dict], versions: dict[str, ServiceRoute]) -> DiscoveredEndpoint:
    meta = service["metadata"]
    annotations = meta.get("annotations") or {}
    problems: list[str] = []
    route = EndpointRoute(**_access(service, secrets, problems), versions=_versions(annotations.get(VERSIONS), problems))
    namespace = route.namespace
    raw_rollout = annotations.get(ROLLOUT)
    revision = hashlib.sha256(json.dumps([annotations.get(VERSIONS), raw_rollout]).encode()).hexdigest()[:12]
    rollout = None if raw_rollout is None else _rollout(raw_rollout, route.versions, revision, problems)
    problems += endpoint_problems(route, versions, ENDPOINT_ANNOTATION_OF)
    return DiscoveredEndpoint(replace(route, problems=tuple(problems)), rollout, revision, f"{namespace}/{meta['name']}")


def _versions(raw: str | None, problems: list[str]) -> tuple[VersionShare, ...]:
    """The VERSIONS annotation, weights computed: a non-default version answers its trafficPercentile, the default
    the rest. Whatever cannot be read is a problem (the endpoint is refused); the rules on the whole table
    (one default, a sum of 100, versions that can serve) are `endpoint_problems`'."""
    if raw is None:
        problems.append(f"{VERSIONS} is missing: an endpoint lists its versions")
        return ()
    given = _json(raw, VERSIONS, list, problems)
    if given is None:
        return ()
    if len(given) > MAX_ENDPOINT_VERSIONS:  # read no further than v1's limit: the annotation may hold 256 KiB
        problems.append(f"{VERSIONS}: {len(given)} versions; an endpoint has 1 to {MAX_ENDPOINT_VERSIONS} (v1's AksEndpoint limit)")
    shares = [share for i, item in enumerate(given[:MAX_ENDPOINT_VERSIONS]) if (share := _version(item, f"{VERSIONS}[{i}]", problems))]
    traffic = {share.version: share.weight for share in shares if not share.is_default}
    rest = PERCENT - sum(traffic.values())
    if rest < 0:
        problems.append(f"{VERSIONS}: the trafficPercentile of the non-default versions sum to {PERCENT - rest}; at most {PERCENT}")
    return tuple(replace(share, weight=max(0, rest)) if share.is_default else share for share in shares)


def _version(item: object, at: str, problems: list[str]) -> VersionShare | None:
    """One VERSIONS entry (weight: its trafficPercentile, or None on the default until `_versions` gives it the rest)."""
    if not isinstance(item, dict):
        problems.append(f"{at}={shown(item)} is not a JSON object")
        return None
    _unknown_keys(item, VERSION_KEYS, at, problems)
    name = item.get("name")
    if not isinstance(name, str):
        problems.append(f"{at} name={shown(name)} must be a string (the version's service name)")
        return None
    is_default = item.get("isDefault", False)
    if not isinstance(is_default, bool):
        problems.append(f"{at} isDefault={shown(is_default)} must be true or false")
        is_default = False
    version_type = item.get("versionType", "treatment")
    if version_type not in VERSION_TYPES:
        problems.append(f"{at} versionType={shown(version_type)} is not one of {', '.join(VERSION_TYPES)}")
        version_type = "treatment"
    traffic = item.get("trafficPercentile")
    if is_default and traffic is not None:
        problems.append(f"{at} trafficPercentile={shown(traffic)}: the default takes the rest; allowed: null")
    percent_rule = f"must be a whole number from 0 to {PERCENT}"
    weight = 0 if is_default or traffic is None else _json_number(item, "trafficPercentile", 0, _is_whole_percent, percent_rule, at, problems)
    mirror = _json_number(item, "mirrorPercentile", 0, _is_whole_percent, percent_rule, at, problems)
    return VersionShare(name, weight, mirror, is_default, version_type)


def _is_whole_percent(value: float) -> bool:
    return isinstance(value, int) and 0 <= value <= PERCENT


def _rollout(raw: str, versions: tuple[VersionShare, ...], revision: str, problems: list[str]) -> RolloutPolicy | None:
    """The ROLLOUT annotation as router.canary's policy: the control is the default version, the treatment the
    one version that answers clients as a treatment; the other versions keep their shares. None, with a
    problem, when it cannot be read or does not fit the versions."""
    given = _json(raw, ROLLOUT, dict, problems)
    if given is None:
        return None
    count = len(problems)
    _unknown_keys(given, tuple(ROLLOUT_DEFAULTS), ROLLOUT, problems)
    steps = given.get("steps")
    if not (isinstance(steps, list) and steps and all(_is_whole_percent(s) and s > 0 for s in steps) and steps == sorted(set(steps))):
        problems.append(f"{ROLLOUT} steps={shown(steps)} must be strictly increasing whole percents from 1 to {PERCENT}, e.g. [10, 25, 50, 100]")
        steps = [PERCENT]

    def number(key: str, valid: Callable[[float], bool], rule: str) -> Any:
        return _json_number(given, key, ROLLOUT_DEFAULTS[key], lambda v: math.isfinite(v) and valid(v), rule, ROLLOUT, problems)

    window = number("analysisWindowSeconds", lambda v: 0 < v <= INT32_MAX, "must be a number of seconds above 0")
    error_rate = number("maxServerErrorRate", lambda v: 0 <= v <= 1, "must be a fraction from 0 to 1")
    latency_ratio = number("maxP99LatencyRatio", lambda v: v >= 1, "must be a number, 1 or more")
    min_requests = number("minRequests", lambda v: isinstance(v, int) and 1 <= v <= INT32_MAX, f"must be a whole number from 1 to {INT32_MAX}")
    controls = [v for v in versions if v.is_default]
    treatments = [v for v in versions if not v.is_default and v.version_type == "treatment" and not v.mirror_percent]
    if len(controls) != 1 or len(treatments) != 1:
        problems.append(f"{ROLLOUT} needs one default version (the control) and one treatment that answers clients (the canary); "
                        f"{VERSIONS} has {len(controls)} and {len(treatments)}")
        return None
    others = tuple((v.version, v.weight) for v in versions if v not in (controls[0], treatments[0]))
    if steps[-1] + sum(share for _, share in others) > PERCENT:
        problems.append(f"{ROLLOUT} steps={shown(steps)}: the last step and the other versions' shares sum past {PERCENT}")
    if len(problems) > count:
        return None
    return RolloutPolicy(controls[0].version, treatments[0].version, tuple(steps), float(window), float(error_rate), float(latency_ratio),
                         min_requests, others, revision)


def _json(raw: str, annotation: str, kind: type, problems: list[str]) -> Any:
    """`raw` parsed, when it is JSON of `kind` (dict or list); None and a problem naming the annotation otherwise."""
    try:
        given = json.loads(raw)
    except (ValueError, RecursionError):
        problems.append(f"{annotation}={shown(raw)} is not JSON")
        return None
    if not isinstance(given, kind):
        problems.append(f"{annotation}={shown(raw)} is not a JSON {'object' if kind is dict else 'list'}")
        return None
    return given


def _unknown_keys(given: dict, allowed: Iterable[str], at: str, problems: list[str]) -> None:
    allowed = tuple(allowed)
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        problems.append(f"{at}: unknown keys {shown(unknown)}; allowed: {', '.join(allowed)}")


def _json_number(given: dict, key: str, default: Any, valid: Callable[[float], bool], rule: str, at: str, problems: list[str]) -> Any:
    """`given[key]` when it is a number `valid` accepts (never a boolean; NaN never valid), else `default` and a problem."""
    value = given.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
        problems.append(f"{at} {key}={shown(value)} {rule}")
        return default
    return value


def _whole_number(annotations: dict[str, str], annotation: str, default: int | None, problems: list[str]) -> int | None:
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
    scale = (_json(raw, AUTOSCALE, dict, problems) if raw is not None else None) or {}

    def setting(key: str, default: float, valid, rule: str):
        return _json_number(scale, key, default, valid, rule, AUTOSCALE, problems)

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
    given = None if raw is None else _json(raw, TOKEN_AUTHORIZATION, dict, problems)
    if given is None:
        return TokenAuthorization()
    _unknown_keys(given, TOKEN_AUTHORIZATION_KEYS, TOKEN_AUTHORIZATION, problems)
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
