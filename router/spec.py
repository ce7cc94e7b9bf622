"""What the router needs to know about each model service: the contract between discovery and Envoy config."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024  # azureml-fe's 100 MB payload cap
HEALTH_PATH = "/"
# What a service gets when discovery finds no value: v1's defaults (a test keeps them equal to the contract's).
DEFAULT_SCORING_TIMEOUT_MS = 60_000
DEFAULT_MAX_CONCURRENT = 1
DEFAULT_MAX_QUEUE_WAIT_MS = 500
SERVICE_PREFIX = "/api/v1/service/"


@dataclass(frozen=True, order=True)
class Endpoint:
    """One ready model replica."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ServiceRoute:
    """One model service as the router sees it."""

    name: str
    namespace: str = "models"
    auth: Literal["key", "token", "none"] = "key"
    keys: tuple[str, ...] = ()  # primary, secondary: both accepted (rotation)
    scoring_timeout_ms: int = DEFAULT_SCORING_TIMEOUT_MS
    max_concurrent: int = DEFAULT_MAX_CONCURRENT  # maxConcurrentRequestsPerContainer, enforced per replica
    max_queue_wait_ms: int = DEFAULT_MAX_QUEUE_WAIT_MS
    endpoints: tuple[Endpoint, ...] = ()
    # Observed service time; sizes the queue so a queued request waits about max_queue_wait_ms at most.
    latency_ms: float | None = None

    @property
    def cluster_name(self) -> str:
        return f"model-{self.namespace}-{self.name}"

    @property
    def prefix(self) -> str:
        return f"{SERVICE_PREFIX}{self.name}/"

    def queue_capacity(self) -> int:
        """Requests allowed to wait for a replica slot (Envoy's max_pending_requests).

        Envoy has no per-request deadline for time spent waiting in the connection pool, so the
        azureml-fe rule "503 after maxQueueWaitMs in the queue" becomes admission control: with
        `slots` requests served in parallel, each taking `latency_ms`, the n-th queued request
        waits about n / slots * latency_ms (Little's law). Only requests expected to start within
        max_queue_wait_ms are queued; the rest get 503 at once. Until latency is observed, the
        scoring time is assumed to equal max_queue_wait_ms (one queued request per slot).
        """
        slots = max(1, len(self.endpoints)) * self.max_concurrent
        latency = self.latency_ms if self.latency_ms and self.latency_ms > 0 else float(self.max_queue_wait_ms)
        # At least one: Envoy also counts a request as pending while it opens a replica connection.
        return max(1, math.floor(slots * self.max_queue_wait_ms / latency))


@dataclass(frozen=True)
class JwtSettings:
    """Entra ID (or any OIDC issuer) token validation for token-auth services."""

    issuer: str
    audiences: tuple[str, ...]
    jwks_uri: str | None = None  # remote JWKS (in cluster: https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys)
    local_jwks_path: str | None = None  # a JWKS file (tests, air-gapped)


@dataclass(frozen=True)
class TlsSettings:
    """TLS termination; the certificate is read through an SDS file so it rotates without a restart."""

    cert_path: str
    key_path: str


@dataclass(frozen=True)
class RouterSettings:
    config_dir: Path
    listen_port: int
    admin_port: int
    listen_host: str = "127.0.0.1"
    admin_host: str = "127.0.0.1"
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    jwt: JwtSettings | None = None
    tls: TlsSettings | None = None
    access_log_path: str = "/dev/stdout"
    node_id: str = "aks-inference-router"
