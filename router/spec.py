"""What the router needs to know about each model service: the contract between discovery and Envoy config.

A service's values reach files that every service shares (one listener, one route table, one cluster
file), and Envoy rejects a whole file for one bad entry. `refuse_unsafe` is the gate in front of them:
a route whose values Envoy would reject, that could be served unauthenticated by mistake, or that
shares its name or cluster with another route is *refused*: it keeps only a route answering a JSON
error that names its problems, and no cluster, so the other services keep serving.

Versioned endpoints pass the same kind of gate (`refuse_unsafe_endpoints`): an endpoint whose auth or
traffic table Envoy would reject, or that would send clients to a version that cannot serve them, is
refused the same way; its versions are services and keep their own clusters either way.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024  # azureml-fe's 100 MB payload cap
# How long a client may take to send a whole request (headers and body) before Envoy answers 408: the
# 100 MB cap arrives within it at 350 KB/s, and a client trickling bytes is cut off instead of holding
# an Envoy stream without end. The body is buffered before a replica is chosen, so the slow client
# never holds a replica meanwhile.
DEFAULT_REQUEST_TIMEOUT_MS = 300_000
HEALTH_PATH = "/"
# What a service gets when discovery finds no value: v1's defaults (a test keeps them equal to the contract's).
DEFAULT_SCORING_TIMEOUT_MS = 60_000
DEFAULT_MAX_CONCURRENT = 1
DEFAULT_MAX_QUEUE_WAIT_MS = 500
# The service time a service is assumed to take until one is measured, when its deployment declares none
# (expectedServiceTimeMs: ServiceRoute.expected_service_time_ms): the router-wide default. Fast on purpose,
# because the two ways a prior can be wrong are not alike. Too slow, and the queue refuses requests that
# would have started within maxQueueWaitMs (the promise broken, on a healthy service); too fast, and a slow
# cold service queues some requests longer than maxQueueWaitMs, for the second or so until its first
# measurement re-sizes the queue (router/metrics.py: a request unanswered for a second already reads as
# slow). 1 ms is below the service time of a model behind the Python inference server, so a burst on a cold
# service is not refused within its budget (maxQueueWaitMs 500 -> 500 places per slot). Not derived from
# scoringTimeoutMs: a timeout bounds the service time from above and says nothing of its size (v1's default
# 60 s would give 1 place per slot, the cold-start refusals of issue #14).
PRIOR_SERVICE_TIME_MS = 1.0
SERVICE_PREFIX = "/api/v1/service/"
# Envoy's admin API can stop Envoy, fail its health checks and turn on debug logging, without any
# authentication: it answers on loopback only, in every mode. What peers need is served read-only by
# the control plane (router/status.py).
ADMIN_HOST = "127.0.0.1"
# The system CA bundle of Debian and Ubuntu (package ca-certificates), and of the router image
# (python:3.11-slim is Debian and installs it): what the remote JWKS host's certificate is checked against.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

AUTH_MODES = ("key", "token", "none")
# Every v1 number is bounded by int32 (contract.limits.INT32_MAX; a test keeps the two equal); Envoy
# accepts each of these values as a duration in milliseconds and as a uint32 threshold.
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1  # Envoy's circuit-breaker thresholds (max_pending_requests) are uint32
MAX_KEYS = 2  # primary and secondary
# A token service's roles, client ids and audience: each a string Envoy matches exactly, bounded so an
# annotation cannot bloat the shared files (contract/v1_files.py keeps the same bounds; a test checks).
MAX_TOKEN_CLAIM_VALUES = 32
MAX_TOKEN_CLAIM_LENGTH = 256
TOKEN_CLAIM_RULE = f"must be 1-{MAX_TOKEN_CLAIM_LENGTH} printable characters without whitespace"
# v1's service-name rule (contract.v1_files.check_service_name): the name is a URL segment and part of a cluster name.
_SERVICE_NAME = re.compile(r"[a-z][-a-z0-9]{1,30}[a-z0-9]")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a Kubernetes namespace (DNS label)
# Inclusive bounds of each whole-number setting: v1 allows 1..int32 and so does Envoy. A route timeout
# of 0 would mean "no timeout", and 0 requests per replica would let none through.
WHOLE_NUMBER_BOUNDS = {
    "scoring_timeout_ms": (1, INT32_MAX),
    "max_concurrent": (1, INT32_MAX),
    "max_queue_wait_ms": (1, INT32_MAX),
}
EXPECTED_SERVICE_TIME_RULE = "must be a whole number of milliseconds from 1 to the scoring timeout"


@dataclass(frozen=True, order=True)
class Endpoint:
    """One ready model replica."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TokenAuthorization:
    """What a token service asks of a token beyond a valid signature, issuer and expiry (enforced by Envoy:
    router/envoy_config.py). Empty: any token the router's issuer signed for its audience."""

    required_roles: tuple[str, ...] = ()  # every one must be in the token's `roles` claim (Entra app roles)
    allowed_client_ids: tuple[str, ...] = ()  # the token's `azp` (v2) or `appid` (v1) is one of them; empty: any client
    audience: str | None = None  # the token's `aud` must be this one, instead of the router's audience

    def __bool__(self) -> bool:
        return bool(self.required_roles or self.allowed_client_ids or self.audience)


@dataclass(frozen=True)
class ServiceRoute:
    """One model service as the router sees it."""

    name: str
    namespace: str = "models"
    # key | token | none. Any other value (discovery hands on what the annotation says) is refused:
    # its route answers 403 to every request.
    auth: str = "key"
    keys: tuple[str, ...] = ()  # primary, secondary: both accepted (rotation)
    scoring_timeout_ms: int = DEFAULT_SCORING_TIMEOUT_MS
    max_concurrent: int = DEFAULT_MAX_CONCURRENT  # maxConcurrentRequestsPerContainer, enforced per replica
    max_queue_wait_ms: int = DEFAULT_MAX_QUEUE_WAIT_MS
    endpoints: tuple[Endpoint, ...] = ()
    # Observed service time of one request on a replica, time spent queued for a slot excluded
    # (router/metrics.py: `next_service_time`); sizes the queue. None: not measured yet.
    latency_ms: float | None = None
    # The deployment's estimate of that service time (expectedServiceTimeMs), 1..scoring_timeout_ms: sizes the
    # queue until one is measured. None: the router-wide PRIOR_SERVICE_TIME_MS.
    expected_service_time_ms: int | None = None
    # Why the router refuses this service (set by `refuse_unsafe`, or by discovery for annotations it
    # cannot read): rendered as a JSON error naming them, with no cluster. Empty: the service is served.
    problems: tuple[str, ...] = ()
    # Token services only (any other auth with it is refused): roles, clients and audience a token must carry.
    token_authorization: TokenAuthorization = TokenAuthorization()
    # A version of this endpoint (EndpointRoute.name): served only through the endpoint's route, never on its own prefix.
    endpoint: str | None = None

    @property
    def cluster_name(self) -> str:
        return f"model-{self.namespace}-{self.name}"

    @property
    def prefix(self) -> str:
        return f"{SERVICE_PREFIX}{self.name}/"

    def concurrency_share(self, routers: int = 1) -> int:
        """Requests one router replica lets run on one model replica at once (Envoy's per-host
        max_connections): maxConcurrentRequestsPerContainer split over the `routers` replicas that
        each enforce their own share, rounded down so the routers together never exceed the cap;
        at least 1, else a service capped below the router count could serve nothing.
        azureml-fe coordinated the cap across its replicas; static shares need no coordination and
        lose at most routers - 1 slots per model replica to the rounding (cap 4, 3 routers: 1 each)."""
        return max(1, self.max_concurrent // max(1, routers))

    @property
    def prior_service_time_ms(self) -> float:
        """The service time assumed until one is measured: the deployment's estimate, else the router-wide prior."""
        expected = self.expected_service_time_ms
        usable = isinstance(expected, int) and not isinstance(expected, bool) and expected > 0  # else refused (route_problems)
        return float(expected) if usable else PRIOR_SERVICE_TIME_MS

    def queue_capacity(self, routers: int = 1, share: int | None = None) -> int:
        """Requests one router replica lets wait for a replica slot (Envoy's max_pending_requests).

        Envoy has no per-request deadline for time spent waiting in the connection pool, so the
        azureml-fe rule "503 after maxQueueWaitMs in the queue" becomes admission control: with
        `slots` requests served in parallel, each taking `latency_ms` (service time, queueing
        excluded), the n-th queued request starts after about n / slots * latency_ms (Little's law).
        Only requests expected to start within max_queue_wait_ms are queued; the rest get 503 at
        once. `slots` is this router's share (`concurrency_share`), so the queues of all routers
        together hold what one service-wide queue would. Until a service time is measured it is
        `prior_service_time_ms` (the deployment's estimate, else the fast router-wide prior: an early
        burst queues instead of being refused); the first measurement (about a second of traffic)
        sizes the queue for real, whatever the prior said.
        """
        # `share`: this router's slots per replica when the live routers split the cap (router/ownership.py).
        slots = max(1, len(self.endpoints)) * (self.concurrency_share(routers) if share is None else share)
        service_ms = self.latency_ms if self.latency_ms and self.latency_ms > 0 else self.prior_service_time_ms
        # At least one: Envoy also counts a request as pending while it opens a replica connection;
        # at most what Envoy's uint32 threshold holds, however short the service time.
        return min(UINT32_MAX, max(1, math.floor(slots * self.max_queue_wait_ms / service_ms)))


# Versioned endpoints (Azure ML v1's AksEndpoint; contract/endpoints.py has the stack rules). The request
# header pins a version for testing (auth is the endpoint's, checked first); the response header names the
# version that answered. The name is Azure ML's own for the same two jobs on online endpoints
# (https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints#test-the-new-deployment).
VERSION_HEADER = "azureml-model-deployment"
PERCENT = 100
MAX_ENDPOINT_VERSIONS = 6  # v1's AksEndpoint limit (contract.endpoints.MAX_VERSIONS; a test keeps them equal)
VERSION_TYPES = ("control", "treatment")


@dataclass(frozen=True)
class VersionShare:
    """One version of an endpoint as its route uses it. `version` is the version's own service name (its
    ServiceRoute, cluster and replicas); `weight` the percent of client requests it answers (the default
    version takes the rest); `mirror_percent` the percent of the endpoint's requests copied to it (a shadow,
    weight 0, whose answers never reach a client)."""

    version: str
    weight: int
    mirror_percent: int = 0
    is_default: bool = False
    version_type: str = "treatment"  # control | treatment


@dataclass(frozen=True)
class EndpointRoute:
    """An endpoint: one scoring URI /api/v1/service/<name>/ and one auth (the endpoint's), spreading requests
    over its versions by weight. Each version is a ServiceRoute of its own (own cluster, queue, limits and
    autoscaling) with `endpoint` set to this name, and is reached only through this route.
    `problems`: why the router refuses the endpoint (rendered as the JSON 503 of a refused service)."""

    name: str
    namespace: str = "models"
    auth: str = "key"
    keys: tuple[str, ...] = ()
    token_authorization: TokenAuthorization = TokenAuthorization()
    versions: tuple[VersionShare, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        return f"{SERVICE_PREFIX}{self.name}/"

    @property
    def default(self) -> str | None:
        return next((v.version for v in self.versions if v.is_default), None)


def is_service_name(name: str) -> bool:
    """Whether `name` can be a URL segment /api/v1/service/<name>/ (v1's service-name rule)."""
    return bool(_SERVICE_NAME.fullmatch(name))


def route_problems(route: ServiceRoute, names: Mapping[str, str] | None = None) -> list[str]:
    """Why the router must refuse `route` on its own: values Envoy would reject (and with them the
    shared file), values that would serve it unauthenticated or without bounds. [] when it is safe.

    Each message names the setting and its value; `names` maps a field to what a user wrote instead
    (discovery passes its annotation names), else the field's name is used."""
    names = names or {}

    def setting(field: str, value: object) -> str:
        return f"{names.get(field, field)}={shown(value)}"

    problems = _identity_problems(route, setting)
    for field, (low, high) in WHOLE_NUMBER_BOUNDS.items():
        value = getattr(route, field)
        if not _is_whole_number(value, low, high):
            problems.append(f"{setting(field, value)} must be a whole number from {low} to {high}")
    expected = route.expected_service_time_ms
    if expected is not None and not _is_whole_number(expected, 1, route.scoring_timeout_ms):
        problems.append(f"{setting('expected_service_time_ms', expected)} {EXPECTED_SERVICE_TIME_RULE} ({shown(route.scoring_timeout_ms)})")
    for endpoint in route.endpoints:
        if not is_ip_address(endpoint.host) or not 1 <= endpoint.port <= 65535:
            problems.append(f"{setting('endpoints', str(endpoint))} is not an IP address and port")
    if route.endpoint is not None and (not is_service_name(route.endpoint) or route.endpoint == route.name):
        problems.append(f"{setting('endpoint', route.endpoint)} is not the service name of another service (the endpoint this version belongs to)")
    return problems + _credential_problems(route, names)


def _identity_problems(item: ServiceRoute | EndpointRoute, setting: Callable[[str, object], str]) -> list[str]:
    """What a service and an endpoint share: an auth Envoy renders, a URL segment, a namespace."""
    problems = []
    if item.auth not in AUTH_MODES:
        problems.append(f"{setting('auth', item.auth)} is not one of {', '.join(AUTH_MODES)} (exactly, lower case)")
    if not is_service_name(item.name):
        problems.append(f"{setting('name', item.name)} is not a service name (3-32 lower-case letters, digits and dashes; a letter first, no dash last)")
    if not _NAMESPACE.fullmatch(item.namespace):
        problems.append(f"{setting('namespace', item.namespace)} is not a Kubernetes namespace name")
    return problems


def _credential_problems(item: ServiceRoute | EndpointRoute, names: Mapping[str, str]) -> list[str]:
    return _key_problems(item.keys, names.get("keys", "keys")) + _token_authorization_problems(
        item, names.get("token_authorization", "token_authorization")
    )


@functools.lru_cache(maxsize=16_384)
def _own_problems(route: ServiceRoute) -> tuple[str, ...]:
    """`route_problems` of a route as the control plane renders it every round: the same routes come back
    each time, and checking 1,000 of them anew was a third of a round's CPU."""
    return tuple(route_problems(route))


def refuse_unsafe(routes: Iterable[ServiceRoute], endpoints: Iterable[EndpointRoute] = ()) -> list[ServiceRoute]:
    """Every route, in the order given, refused (its `problems` set) when it must not reach Envoy:
    its own values (`route_problems`; a route refused already keeps its reasons), or a service name
    or cluster it shares with another route or an endpoint. Envoy rejects a duplicate cluster, and a
    shared name would hand one service's traffic to another, so every route involved is refused
    (`refuse_unsafe_endpoints` refuses the endpoints involved)."""
    routes = list(routes)
    by_name = _name_claims(routes, endpoints)
    by_cluster: dict[str, list[str]] = defaultdict(list)
    for route in routes:
        by_cluster[route.cluster_name].append(f"{route.namespace}/{route.name}")
    checked = []
    for route in routes:
        problems = list(route.problems) or list(_own_problems(route))
        if len(by_name[route.name]) > 1:
            problems.append(_claimed_twice(route.name, by_name))
        elif len(by_cluster[route.cluster_name]) > 1:
            problems.append(f"cluster {route.cluster_name!r} would serve {' and '.join(sorted(by_cluster[route.cluster_name]))}")
        problems = tuple(dict.fromkeys(problems))  # idempotent: no message twice
        checked.append(route if problems == route.problems else replace(route, problems=problems))
    return checked


def _name_claims(routes: Iterable[ServiceRoute], endpoints: Iterable[EndpointRoute]) -> dict[str, list[str]]:
    """URL segment -> the namespace of every service and endpoint that claims it."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for item in [*routes, *endpoints]:
        by_name[item.name].append(item.namespace)
    return by_name


def _claimed_twice(name: str, by_name: Mapping[str, list[str]]) -> str:
    return f"service name {name!r} is claimed by {len(by_name[name])} services (namespaces {', '.join(sorted(set(by_name[name])))})"


def endpoint_problems(endpoint: EndpointRoute, versions: Mapping[str, ServiceRoute], names: Mapping[str, str] | None = None) -> list[str]:
    """Why the router must refuse `endpoint` on its own: its auth values as for a service (`route_problems`),
    a traffic table Envoy's weighted clusters cannot carry or v1 would not accept (1 to MAX_ENDPOINT_VERSIONS
    versions, unique names, whole percents, exactly one default, client weights summing to PERCENT, a shadow
    answering no client), and a version that answers clients (weight > 0) but cannot serve through it:
    `versions` (service name -> checked route) has no such service, refuses it, holds it in another
    namespace, or holds it for another endpoint. A shadow that cannot serve is a problem of nobody's: it
    is simply not mirrored (`served_versions`). [] when it is safe; `names` as for `route_problems`."""
    names = names or {}

    def setting(field: str, value: object) -> str:
        return f"{names.get(field, field)}={shown(value)}"

    problems = _identity_problems(endpoint, setting) + _credential_problems(endpoint, names)
    key = names.get("versions", "versions")
    shares = endpoint.versions
    if not 1 <= len(shares) <= MAX_ENDPOINT_VERSIONS:
        problems.append(f"{key}: {len(shares)} versions; an endpoint has 1 to {MAX_ENDPOINT_VERSIONS} (v1's AksEndpoint limit)")
    for name, count in Counter(v.version for v in shares).items():
        if count > 1:
            problems.append(f"{key}: version {shown(name)} is listed {count} times")
    for i, share in enumerate(shares):
        at = f"{key}[{i}] {shown(share.version)}"
        if not is_service_name(share.version) or share.version == endpoint.name:
            problems.append(f"{at} is not the service name of a version (3-32 lower-case letters, digits and dashes; not the endpoint's own name)")
        for field, value in (("weight", share.weight), ("mirror_percent", share.mirror_percent)):
            if not _is_percent(value):
                problems.append(f"{at}: {field}={shown(value)} must be a whole number from 0 to {PERCENT}")
        if share.version_type not in VERSION_TYPES:
            problems.append(f"{at}: version_type={shown(share.version_type)} is not one of {', '.join(VERSION_TYPES)}")
        if share.mirror_percent and (share.weight or share.is_default):
            problems.append(f"{at}: a shadow (mirror_percent={shown(share.mirror_percent)}) answers no client: weight 0 and not the default")
        route = versions.get(share.version)
        if _is_percent(share.weight) and share.weight > 0 and (reason := _unservable(endpoint, share.version, route)):
            problems.append(f"{at} answers {share.weight}% of requests but {reason}")
    defaults = [v.version for v in shares if v.is_default]
    if len(defaults) != 1:
        problems.append(f"{key}: {len(defaults)} default versions ({', '.join(defaults) or 'none'}); exactly one takes the traffic the others leave")
    elif all(_is_percent(v.weight) for v in shares) and sum(v.weight for v in shares) != PERCENT:
        problems.append(f"{key}: the weights sum to {sum(v.weight for v in shares)}, not {PERCENT} (the default takes the rest)")
    return problems


def _is_percent(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= PERCENT


def _unservable(endpoint: EndpointRoute, version: str, route: ServiceRoute | None) -> str | None:
    """Why `route` cannot serve as `endpoint`'s `version`; None when it can."""
    if route is None:
        return "no such service was found"
    if route.problems:
        return f"the router refuses it ({'; '.join(route.problems)})"
    if route.namespace != endpoint.namespace:
        return f"it is in namespace {route.namespace!r}, not the endpoint's {endpoint.namespace!r}"
    if route.endpoint != endpoint.name:
        return f"it is not marked as a version of {endpoint.name!r} (its endpoint: {route.endpoint!r})"
    return None


def served_versions(endpoint: EndpointRoute, versions: Mapping[str, ServiceRoute]) -> list[tuple[VersionShare, ServiceRoute]]:
    """The versions of an endpoint that can serve through it, in its order: each with its route. A shadow
    or a 0 % version missing from here is left out of the endpoint's route without refusing it."""
    served = []
    for share in endpoint.versions:
        route = versions.get(share.version)
        if route is not None and _unservable(endpoint, share.version, route) is None:
            served.append((share, route))
    return served


def refuse_unsafe_endpoints(endpoints: Iterable[EndpointRoute], routes: Iterable[ServiceRoute]) -> list[EndpointRoute]:
    """Every endpoint, in the order given, refused (its `problems` set) when it must not reach Envoy:
    `endpoint_problems` against `routes` (checked by `refuse_unsafe(routes, endpoints)` first; an endpoint
    refused already keeps its reasons), or a service name another endpoint or a service also claims.
    One endpoint's values never refuse another's."""
    endpoints, routes = list(endpoints), list(routes)
    by_name = _name_claims(routes, endpoints)
    versions = {route.name: route for route in routes}
    checked = []
    for endpoint in endpoints:
        problems = list(endpoint.problems) or endpoint_problems(endpoint, versions)
        if len(by_name[endpoint.name]) > 1:
            problems.append(_claimed_twice(endpoint.name, by_name))
        checked.append(replace(endpoint, problems=tuple(dict.fromkeys(problems))))
    return checked


def with_live_split(endpoint: EndpointRoute, split: Mapping[str, int]) -> tuple[EndpointRoute, str | None]:
    """`endpoint` with the split the router applied itself (a canary step, a rollback: router/canary.py):
    the live shares replace the configured weights of the non-default versions they name, and the default
    takes the rest. Pure, never raises: a split that does not fit the endpoint (an unknown version, a share
    that is not a whole percent, a share for a shadow, shares past PERCENT, a default share other than the
    rest) is ignored, and the configured endpoint comes back with the reason. Empty: the configured one."""
    if not split:
        return endpoint, None
    by_name = {v.version: v for v in endpoint.versions}
    problems = [f"{shown(name)} is not a version of {endpoint.name!r}" for name in split if name not in by_name]
    problems += [f"{shown(name)}={shown(share)} is not a whole percent" for name, share in split.items() if not _is_percent(share)]
    problems += [f"{shown(name)} is a shadow: it answers no client" for name, share in split.items()
                 if name in by_name and by_name[name].mirror_percent and share]
    default = endpoint.default
    if problems or default is None:
        return endpoint, f"live split {shown(dict(split))} ignored: {'; '.join(problems) or 'the endpoint has no default version'}"
    shares = {v.version: split.get(v.version, v.weight) for v in endpoint.versions if not v.is_default}
    rest = PERCENT - sum(shares.values())
    if rest < 0:
        return endpoint, f"live split {shown(dict(split))} ignored: the shares of the non-default versions sum past {PERCENT}"
    if split.get(default, rest) != rest:
        return endpoint, f"live split {shown(dict(split))} ignored: the default {default!r} takes the rest ({rest}), not {split[default]}"
    versions = tuple(replace(v, weight=rest if v.version == default else shares[v.version]) for v in endpoint.versions)
    return replace(endpoint, versions=versions), None


def _key_problems(keys: tuple[str, ...], setting: str) -> list[str]:
    """Never the keys themselves in a message: it reaches logs and response bodies."""
    problems = []
    if len(keys) > MAX_KEYS:
        problems.append(f"{setting}: {len(keys)} keys, at most {MAX_KEYS} (primary, secondary)")
    if len(set(keys)) < len(keys):
        problems.append(f"{setting}: the primary and secondary key are the same (Envoy rejects duplicate keys)")
    if not all(key and key.isprintable() for key in keys):
        problems.append(f"{setting}: a key is empty or holds characters a header cannot carry")
    return problems


def _token_authorization_problems(route: ServiceRoute | EndpointRoute, setting: str) -> list[str]:
    """What Envoy needs of a token service's rules: values it can match exactly (no whitespace or control
    characters, bounded), and a token service to apply them to. The contract checks Entra's stricter
    shapes (contract/v1_files.py: TokenAuthorization); these are the router's last line."""
    rules = route.token_authorization
    if not rules:
        return []
    if route.auth != "token":
        return [f"{setting} is set but auth={shown(route.auth)}: roles, clients and audience apply to token auth only"]
    problems = []
    for field, values in (("requiredRoles", rules.required_roles), ("allowedClientIds", rules.allowed_client_ids)):
        if len(values) > MAX_TOKEN_CLAIM_VALUES:
            problems.append(f"{setting} {field}: {len(values)} values, at most {MAX_TOKEN_CLAIM_VALUES}")
        problems += [f"{setting} {field}: {shown(v)} {TOKEN_CLAIM_RULE}" for v in values if not is_token_claim_value(v)]
    if rules.audience is not None and not is_token_claim_value(rules.audience):
        problems.append(f"{setting} audience={shown(rules.audience)} {TOKEN_CLAIM_RULE}")
    return problems


def is_token_claim_value(value: object) -> bool:
    """A role, client id or audience the router can match: 1..MAX_TOKEN_CLAIM_LENGTH printable characters, no whitespace."""
    return isinstance(value, str) and 0 < len(value) <= MAX_TOKEN_CLAIM_LENGTH and value.isprintable() and not any(c.isspace() for c in value)


def _is_whole_number(value: object, low: object, high: object) -> bool:
    """Whether `value` is an int (not a bool) from `low` to `high`; False, never an error, when a bound is not a number."""
    numbers = (value, low, high)
    return all(isinstance(n, int) and not isinstance(n, bool) for n in numbers) and low <= value <= high  # type: ignore[operator]


def is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def shown(value: object, limit: int = 80) -> str:
    """A value as a message shows it: quoted, and cut short (an annotation may hold 256 KiB)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class JwtSettings:
    """Entra ID (or any OIDC issuer) token validation for token-auth services."""

    issuer: str
    audiences: tuple[str, ...]
    jwks_uri: str | None = None  # remote JWKS (in cluster: https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys)
    local_jwks_path: str | None = None  # a JWKS file (tests, air-gapped)
    # The CAs that may sign the remote JWKS host's certificate (PEM bundle); the certificate must also
    # name the host (DNS SAN, or IP SAN for an address). Never unvalidated: a JWKS from an impostor
    # would let it sign tokens for every token service.
    jwks_ca_bundle: str = SYSTEM_CA_BUNDLE


@dataclass(frozen=True)
class TlsSettings:
    """TLS termination; the certificate is read through an SDS file so it rotates without a restart."""

    cert_path: str
    key_path: str


@dataclass(frozen=True)
class RouterSettings:
    config_dir: Path
    listen_port: int
    admin_port: int  # on ADMIN_HOST
    listen_host: str = "127.0.0.1"
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    jwt: JwtSettings | None = None
    tls: TlsSettings | None = None
    access_log_path: str = "/dev/stdout"
    node_id: str = "aks-inference-router"
    # Without a peer list: the router replicas that each enforce their floor share of every service's limits
    # (ServiceRoute.concurrency_share); with one, the live routers split each cap exactly (router/ownership.py).
    router_replicas: int = 1
    # The whole request must arrive within this (Envoy answers 408); the body is buffered first.
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    # Envoy's heap budget: new requests get 503 near it instead of the container being OOM-killed with
    # every upload it buffers (up to max_request_bytes each). None: no budget (local mode).
    max_heap_bytes: int | None = None
    # Service-wide limits (router/ownership.py): the peer listener's port (None: no peer listener, one
    # router), this router's own address on it, and every live router's peer listener, this one included.
    # With a peer list the live routers split each service's cap exactly, and one holding no slot forwards.
    peer_port: int | None = None
    peer_address: str | None = None
    peers: tuple[Endpoint, ...] = ()

    @property
    def peer_identity(self) -> Endpoint | None:
        """This router as its peers list it (its peer listener), or None without a peer listener."""
        return Endpoint(self.peer_address, self.peer_port) if self.peer_address and self.peer_port else None

    @property
    def admin_host(self) -> str:
        """Loopback, always: not a field, so no setting can expose Envoy's admin API."""
        return ADMIN_HOST
