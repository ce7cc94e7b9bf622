"""What the router needs to know about each model service: the contract between discovery and Envoy config.

A service's values reach files that every service shares (one listener, one route table, one cluster
file), and Envoy rejects a whole file for one bad entry. `refuse_unsafe` is the gate in front of them:
a route whose values Envoy would reject, that could be served unauthenticated by mistake, or that
shares its name or cluster with another route is *refused*: it keeps only a route answering a JSON
error that names its problems, and no cluster, so the other services keep serving.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
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
# The service time assumed until one is measured: a fast model, so a cold service queues an early burst
# (maxQueueWaitMs 500 -> 500 requests per slot) instead of refusing most of it.
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
    # Why the router refuses this service (set by `refuse_unsafe`, or by discovery for annotations it
    # cannot read): rendered as a JSON error naming them, with no cluster. Empty: the service is served.
    problems: tuple[str, ...] = ()
    # Token services only (any other auth with it is refused): roles, clients and audience a token must carry.
    token_authorization: TokenAuthorization = TokenAuthorization()

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

    def queue_capacity(self, routers: int = 1) -> int:
        """Requests one router replica lets wait for a replica slot (Envoy's max_pending_requests).

        Envoy has no per-request deadline for time spent waiting in the connection pool, so the
        azureml-fe rule "503 after maxQueueWaitMs in the queue" becomes admission control: with
        `slots` requests served in parallel, each taking `latency_ms` (service time, queueing
        excluded), the n-th queued request starts after about n / slots * latency_ms (Little's law).
        Only requests expected to start within max_queue_wait_ms are queued; the rest get 503 at
        once. `slots` is this router's share (`concurrency_share`), so the queues of all routers
        together hold what one service-wide queue would. Until a service time is measured the
        service is assumed fast (PRIOR_SERVICE_TIME_MS): an early burst queues instead of being
        refused, and the first measurement (about a second of traffic) sizes the queue for real.
        """
        slots = max(1, len(self.endpoints)) * self.concurrency_share(routers)
        service_ms = self.latency_ms if self.latency_ms and self.latency_ms > 0 else PRIOR_SERVICE_TIME_MS
        # At least one: Envoy also counts a request as pending while it opens a replica connection;
        # at most what Envoy's uint32 threshold holds, however short the service time.
        return min(UINT32_MAX, max(1, math.floor(slots * self.max_queue_wait_ms / service_ms)))


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

    problems = []
    if route.auth not in AUTH_MODES:
        problems.append(f"{setting('auth', route.auth)} is not one of {', '.join(AUTH_MODES)} (exactly, lower case)")
    if not is_service_name(route.name):
        problems.append(f"{setting('name', route.name)} is not a service name (3-32 lower-case letters, digits and dashes; a letter first, no dash last)")
    if not _NAMESPACE.fullmatch(route.namespace):
        problems.append(f"{setting('namespace', route.namespace)} is not a Kubernetes namespace name")
    for field, (low, high) in WHOLE_NUMBER_BOUNDS.items():
        value = getattr(route, field)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{setting(field, value)} must be a whole number from {low} to {high}")
    for endpoint in route.endpoints:
        if not is_ip_address(endpoint.host) or not 1 <= endpoint.port <= 65535:
            problems.append(f"{setting('endpoints', str(endpoint))} is not an IP address and port")
    problems += _key_problems(route.keys, names.get("keys", "keys"))
    problems += _token_authorization_problems(route, names.get("token_authorization", "token_authorization"))
    return problems


def refuse_unsafe(routes: Iterable[ServiceRoute]) -> list[ServiceRoute]:
    """Every route, in the order given, refused (its `problems` set) when it must not reach Envoy:
    its own values (`route_problems`; a route refused already keeps its reasons), or a service name
    or cluster it shares with another route. Envoy rejects a duplicate cluster, and a shared name
    would hand one service's traffic to another, so every route involved is refused."""
    routes = list(routes)
    by_name: dict[str, list[str]] = defaultdict(list)
    by_cluster: dict[str, list[str]] = defaultdict(list)
    for route in routes:
        by_name[route.name].append(route.namespace)
        by_cluster[route.cluster_name].append(f"{route.namespace}/{route.name}")
    checked = []
    for route in routes:
        problems = list(route.problems) or route_problems(route)
        if len(by_name[route.name]) > 1:
            problems.append(f"service name {route.name!r} is claimed by {len(by_name[route.name])} services (namespaces {', '.join(sorted(set(by_name[route.name])))})")
        elif len(by_cluster[route.cluster_name]) > 1:
            problems.append(f"cluster {route.cluster_name!r} would serve {' and '.join(sorted(by_cluster[route.cluster_name]))}")
        checked.append(replace(route, problems=tuple(dict.fromkeys(problems))))  # idempotent: no message twice
    return checked


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


def _token_authorization_problems(route: ServiceRoute, setting: str) -> list[str]:
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
    # Router replicas that each enforce their share of every service's limits (ServiceRoute.concurrency_share).
    router_replicas: int = 1
    # The whole request must arrive within this (Envoy answers 408); the body is buffered first.
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    # Envoy's heap budget: new requests get 503 near it instead of the container being OOM-killed with
    # every upload it buffers (up to max_request_bytes each). None: no budget (local mode).
    max_heap_bytes: int | None = None

    @property
    def admin_host(self) -> str:
        """Loopback, always: not a field, so no setting can expose Envoy's admin API."""
        return ADMIN_HOST
