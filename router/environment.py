"""The router pod's environment contract: every variable the control plane reads, in one table.

`RouterEnvironment` is both sides of it: the control plane reads it with `from_environ` and the
deployer (components/router_manifests.py) writes it with `as_env`, so no variable name is spelled
twice. Defaults are what a router pod gets when a variable is absent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from router.discovery import ROUTER_APP, ROUTER_NAMESPACE
from router.spec import JwtSettings, RouterSettings, TlsSettings

PLAIN_PORT = 8080
TLS_PORT = 8443
PEER_PORT = 8081  # plain HTTP between router pods only (components/router_manifests.py NetworkPolicies)

# field of RouterEnvironment -> environment variable
VARIABLES = {
    "model_namespaces": "AKSINF_MODEL_NAMESPACES",  # comma-separated namespaces holding model Services
    "namespace": "AKSINF_NAMESPACE",  # the router's own namespace (leases, peer discovery)
    "router_service": "AKSINF_ROUTER_SERVICE",  # the router's Service: its EndpointSlices list the peers
    "config_dir": "AKSINF_CONFIG_DIR",  # Envoy's config directory, shared with the Envoy container
    "tls_dir": "AKSINF_TLS_DIR",  # tls.crt + tls.key (a mounted kubernetes.io/tls Secret); absent: plain HTTP
    "listen_port": "AKSINF_LISTEN_PORT",  # the scoring port; default 8443 with TLS, 8080 without
    "admin_port": "AKSINF_ADMIN_PORT",  # Envoy's admin port, on 127.0.0.1 only (no container port)
    "metrics_port": "AKSINF_METRICS_PORT",  # the control plane's status server: /metrics, /load (peers), /ready (probe)
    "jwt_issuer": "AKSINF_JWT_ISSUER",  # token auth: issuer, audience and JWKS, all three or none
    "jwt_audience": "AKSINF_JWT_AUDIENCE",
    "jwks_uri": "AKSINF_JWKS_URI",
    # PEM bundle of the CAs the JWKS host's certificate must chain to; absent: the system bundle (spec.SYSTEM_CA_BUNDLE)
    "jwks_ca_bundle": "AKSINF_JWKS_CA_BUNDLE",
    # router replicas the Deployment starts with: each Envoy enforces 1/N of every service's limits until it has read
    # the live peer list (every round); then the live routers split each cap exactly (router/ownership.py)
    "router_replicas": "AKSINF_ROUTER_REPLICAS",
    # the peer listener: where a router holding none of a service's slots forwards its requests (router/ownership.py)
    "peer_port": "AKSINF_PEER_PORT",
    # Envoy's heap budget in bytes (a share of its container's memory limit): new requests get 503 near it
    "envoy_heap_bytes": "AKSINF_ENVOY_HEAP_BYTES",
    # Envoy's worker threads (`--concurrency`): its container's CPU limit; absent: Envoy's default, one per
    # hardware thread of the node (https://www.envoyproxy.io/docs/envoy/latest/operations/cli#cmdoption-concurrency)
    "envoy_concurrency": "AKSINF_ENVOY_CONCURRENCY",
}


@dataclass(frozen=True)
class RouterEnvironment:
    model_namespaces: tuple[str, ...] = ("models",)
    namespace: str = ROUTER_NAMESPACE
    router_service: str = ROUTER_APP
    config_dir: str = "/etc/envoy/dynamic"
    tls_dir: str = "/etc/aks-inference/tls"
    listen_port: int | None = None
    admin_port: int = 9901
    metrics_port: int = 9090
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwks_uri: str | None = None
    jwks_ca_bundle: str | None = None
    router_replicas: int = 1
    peer_port: int = PEER_PORT
    envoy_heap_bytes: int | None = None
    envoy_concurrency: int | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RouterEnvironment:
        environ = os.environ if environ is None else environ
        values: dict = {}
        for field in fields(cls):
            raw = environ.get(VARIABLES[field.name])
            if raw is None or raw == "":
                continue
            if field.name == "model_namespaces":
                values[field.name] = tuple(n for n in raw.split(",") if n)
            elif field.name.endswith("_port") or field.name in ("router_replicas", "envoy_heap_bytes", "envoy_concurrency"):
                values[field.name] = int(raw)
            else:
                values[field.name] = raw
        return cls(**values)

    def as_env(self) -> list[dict[str, str]]:
        """The container `env` list: every field that has a value, in table order."""
        env = []
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            text = ",".join(value) if isinstance(value, tuple) else str(value)
            env.append({"name": VARIABLES[field.name], "value": text})
        return env

    def scoring_port(self, tls: bool) -> int:
        return self.listen_port or (TLS_PORT if tls else PLAIN_PORT)

    def router_settings(self) -> RouterSettings:
        tls_dir = Path(self.tls_dir)
        tls = TlsSettings(str(tls_dir / "tls.crt"), str(tls_dir / "tls.key")) if (tls_dir / "tls.crt").exists() else None
        jwt = None
        if self.jwt_issuer:
            bundle = {"jwks_ca_bundle": self.jwks_ca_bundle} if self.jwks_ca_bundle else {}
            jwt = JwtSettings(self.jwt_issuer, (self.jwt_audience,), jwks_uri=self.jwks_uri, **bundle)
        return RouterSettings(
            config_dir=Path(self.config_dir),
            listen_host="0.0.0.0",  # in a pod: the Service routes to the pod IP
            listen_port=self.scoring_port(tls is not None),
            admin_port=self.admin_port,  # Envoy's admin API answers on 127.0.0.1 only (RouterSettings.admin_host)
            router_replicas=self.router_replicas,
            peer_port=self.peer_port,
            max_heap_bytes=self.envoy_heap_bytes,
            jwt=jwt,
            tls=tls,
        )
