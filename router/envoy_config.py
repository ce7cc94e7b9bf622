"""Envoy configuration with azureml-fe semantics: pure builders (routes and settings in, documents out).
They are served to Envoy as files (file-based xDS) by `router/envoy_files.py`.

Layout of the config directory (Envoy watches it; only a rename triggers a reload):
  bootstrap.yaml      static: admin on 127.0.0.1 only, LDS + CDS from files below
  lds.yaml            the listener: request-id guard -> body_size_limit -> jwt_authn -> api_key_auth -> router
  rds.yaml            routes, one prefix per service: /api/v1/service/<name>/ (rewritten to /)
  cds.yaml            one cluster per served service, model-<namespace>-<name>, with its ready replicas
  sds-tls.yaml        the TLS certificate (rotates without restart)

Every dynamic file carries a `version_info` that hashes its resources; Envoy reports the version it
serves per file (`SUBSCRIPTION_STATS`), so the control plane can tell a file Envoy rejected.

Endpoints are inline in CDS rather than file-based EDS: every file subscription holds an
inotify instance, and with the usual limit of 128 per user Envoy stops loading config
beyond ~120 services (measured; bench/router.py). A CDS update replaces only the
clusters whose replicas changed; in-flight requests finish on the old cluster object.

Routes pass `refuse_unsafe` (router/spec.py) first: a refused service renders as a JSON error and no
cluster, and a route forwards requests only for the three known auth values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from router.spec import (
    HEALTH_PATH,
    RouterSettings,
    ServiceRoute,
    is_service_name,
    refuse_unsafe,
)

T = "type.googleapis.com/"
ROUTE_CONFIG = "models"
STAT_PREFIX = "router"  # the connection manager's stats: http.router.*
TLS_SECRET = "router-tls"
JWT_PROVIDER = "entra"
API_KEY_FILTER = "envoy.filters.http.api_key_auth"
JWT_FILTER = "envoy.filters.http.jwt_authn"
STREAM_IDLE_TIMEOUT_MS = 300_000  # a stalled upload or download is dropped after 5 minutes without a byte
CLIENT_HEADER = "x-aksinf-client"  # which key (primary/secondary) authenticated; the key itself is hidden
TOKEN_AUTH_MISSING = "Token authentication is not configured on this router (no issuer/audience): no token can be accepted"
INVALID_AUTH = "This service's auth setting is invalid, so the router refuses every request"
SERVICE_REFUSED = "This service's settings are invalid, so the router does not serve it"
# The stats prefix of the subscription that loads each dynamic file: `<prefix>.version_text` is the
# version_info Envoy serves, `<prefix>.update_rejected` counts the updates it refused.
SUBSCRIPTION_STATS = {
    "lds.yaml": "listener_manager.lds",
    "cds.yaml": "cluster_manager.cds",
    "rds.yaml": f"http.{STAT_PREFIX}.rds.{ROUTE_CONFIG}",
    "sds-tls.yaml": f"sds.{TLS_SECRET}",
}
# A client's x-request-id is kept only when it is a UUID (v1 clients correlate with theirs); anything
# else (too long, not a UUID, odd characters) is replaced by a fresh UUID before any filter or log
# sees it. Envoy itself only ever generates UUIDs, so its own ids pass unchanged.
# A request Envoy refuses before its filters run (no Host header, HTTP/1.0, a path that is not
# absolute) keeps the id as sent; the access log and error bodies print at most UUID_LENGTH characters.
REQUEST_ID_HEADER = "x-request-id"
UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
UUID_LENGTH = 36

ACCESS_LOG_FORMAT = {
    "time": "%START_TIME%",
    "request_id": f"%REQ(X-REQUEST-ID):{UUID_LENGTH}%",
    "service": "%ROUTE_NAME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "status": "%RESPONSE_CODE%",
    "duration_ms": "%DURATION%",
    "upstream_ms": "%RESP(X-MS-RUN-FN-EXEC-MS)%",
    "replica": "%UPSTREAM_HOST%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "bytes_in": "%BYTES_RECEIVED%",
    "bytes_out": "%BYTES_SENT%",
    "client": "%REQ(X-AKSINF-CLIENT)%",
}
ERROR_BODY = {
    "status": "%RESPONSE_CODE%",
    "error": "%LOCAL_REPLY_BODY%",
    "requestId": f"%REQ(X-REQUEST-ID):{UUID_LENGTH}%",
}


def _path_source(config_dir: Path, file_name: str) -> dict:
    path = config_dir / file_name
    return {
        "resource_api_version": "V3",
        "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}},
    }


def dynamic_file(resources: list[dict]) -> dict:
    """One dynamic file: its resources and a version_info that hashes them (Envoy reports it once applied)."""
    canonical = json.dumps(resources, sort_keys=True, separators=(",", ":")).encode()
    return {"version_info": hashlib.sha256(canonical).hexdigest()[:16], "resources": resources}


# --------------------------------------------------------------------------- bootstrap


def render_bootstrap(settings: RouterSettings) -> dict:
    return {
        "node": {"id": settings.node_id, "cluster": "aks-inference"},
        "admin": {"address": {"socket_address": {"address": settings.admin_host, "port_value": settings.admin_port}}},
        "dynamic_resources": {
            "lds_config": _path_source(settings.config_dir, "lds.yaml"),
            "cds_config": _path_source(settings.config_dir, "cds.yaml"),
        },
        "overload_manager": {
            "refresh_interval": "0.25s",
            "resource_monitors": [
                {
                    "name": "envoy.resource_monitors.global_downstream_max_connections",
                    "typed_config": {
                        "@type": T + "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                        "max_active_downstream_connections": 50000,
                    },
                }
            ],
        },
    }


# --------------------------------------------------------------------------- listener


def _local_reply_mappers(settings: RouterSettings) -> list[dict]:
    def mapper(flag: str, status: int, text: str) -> dict:
        return {"filter": {"response_flag_filter": {"flags": [flag]}}, "status_code": status, "body": {"inline_string": text}}

    def status_is(code: int) -> dict:
        return {"status_code_filter": {"comparison": {"op": "EQ", "value": {"default_value": code, "runtime_key": f"aksinf_{code}"}}}}

    return [
        # The health answer stays plain text (probes and load balancers read "Healthy").
        {"filter": status_is(200), "body_format_override": {"text_format": "%LOCAL_REPLY_BODY%"}},
        mapper("UO", 503, "Too many requests for this service (overloaded): its queue is full, retry later"),
        mapper("UH", 503, "No ready replicas for this service"),
        mapper("UF", 503, "Replica unreachable (connection failure)"),
        # azureml-fe's answer when the model process dies or drops the connection mid-request.
        mapper("UC", 502, "Replica closed connection before replying"),
        mapper("UT", 504, "Scoring timeout: the model did not answer within scoringTimeoutMs"),
        mapper("NR", 404, "Unknown service"),
        {"filter": status_is(413), "body": {"inline_string": f"Payload too large: the limit is {settings.max_request_bytes} bytes"}},
    ]


def _request_id_guard() -> dict:
    """Replaces x-request-id with %UNIQUE_ID% (a fresh UUID) unless the value is a UUID: the header
    mutation filter, skipped by a matcher when the header matches UUID_PATTERN (RE2, whole value).
    First in the chain, so every later filter, local reply, log line and the model see the result.
    Header values with control characters other than tab never get here: Envoy's codec answers 400."""
    return {
        "name": "aksinf.request_id_guard",
        "typed_config": {
            "@type": T + "envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {
                "name": "envoy.filters.http.header_mutation",
                "typed_config": {
                    "@type": T + "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                    "mutations": {
                        "request_mutations": [
                            {"append": {"header": {"key": REQUEST_ID_HEADER, "value": "%UNIQUE_ID%"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}}
                        ]
                    },
                },
            },
            "xds_matcher": {
                "matcher_list": {
                    "matchers": [
                        {
                            "predicate": {
                                "single_predicate": {
                                    "input": {
                                        "name": "request-id",
                                        "typed_config": {"@type": T + "envoy.type.matcher.v3.HttpRequestHeaderMatchInput", "header_name": REQUEST_ID_HEADER},
                                    },
                                    "value_match": {"safe_regex": {"google_re2": {}, "regex": UUID_PATTERN}},
                                }
                            },
                            "on_match": {
                                "action": {"name": "keep", "typed_config": {"@type": T + "envoy.extensions.filters.common.matcher.action.v3.SkipFilter"}}
                            },
                        }
                    ]
                }
            },
        },
    }


def _http_filters(settings: RouterSettings) -> list[dict]:
    filters = [
        _request_id_guard(),
        {
            "name": "envoy.filters.http.body_size_limit",
            "typed_config": {
                "@type": T + "envoy.extensions.filters.http.body_size_limit.v3.BodySizeLimit",
                "max_request_bytes": settings.max_request_bytes,
            },
        }
    ]
    if settings.jwt:
        jwt = settings.jwt
        provider: dict = {
            "issuer": jwt.issuer,
            "audiences": list(jwt.audiences),
            "forward": False,  # the model never sees the token
            "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
            "require_expiration": True,
        }
        if jwt.local_jwks_path:
            provider["local_jwks"] = {"filename": jwt.local_jwks_path}
        else:
            provider["remote_jwks"] = {
                "http_uri": {"uri": jwt.jwks_uri, "cluster": "jwks", "timeout": "5s"},
                "cache_duration": "600s",
                "async_fetch": {"fast_listener": True},
                "retry_policy": {"num_retries": 3},
            }
        filters.append(
            {
                "name": JWT_FILTER,
                "typed_config": {
                    "@type": T + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                    "providers": {JWT_PROVIDER: provider},
                    "requirement_map": {JWT_PROVIDER: {"provider_name": JWT_PROVIDER}},
                },
            }
        )
    filters += [
        {
            "name": API_KEY_FILTER,
            "typed_config": {
                "@type": T + "envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
                # Keys live on each route: a key opens exactly one service.
                "key_sources": [{"header": "Authorization"}],
            },
        },
        {"name": "envoy.filters.http.router", "typed_config": {"@type": T + "envoy.extensions.filters.http.router.v3.Router"}},
    ]
    return filters


def _listener(settings: RouterSettings) -> dict:
    hcm = {
        "@type": T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": STAT_PREFIX,
        "codec_type": "AUTO",
        "generate_request_id": True,
        # Envoy may otherwise rewrite one character of a UUID to carry a trace decision: a client's
        # UUID reaches the logs and the model byte for byte.
        "request_id_extension": {"typed_config": {"@type": T + "envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig", "pack_trace_reason": False}},
        "always_set_request_id_in_response": True,
        "rds": {"route_config_name": ROUTE_CONFIG, "config_source": _path_source(settings.config_dir, "rds.yaml")},
        "http_filters": _http_filters(settings),
        "access_log": [
            {
                "name": "envoy.access_loggers.file",
                "typed_config": {
                    "@type": T + "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                    "path": settings.access_log_path,
                    "log_format": {"json_format": ACCESS_LOG_FORMAT},
                },
            }
        ],
        "local_reply_config": {
            "mappers": _local_reply_mappers(settings),
            "body_format": {"json_format": ERROR_BODY, "content_type": "application/json"},
        },
        "common_http_protocol_options": {"idle_timeout": "300s"},
        "stream_idle_timeout": _milliseconds(STREAM_IDLE_TIMEOUT_MS),
        "request_headers_timeout": "10s",
    }
    listener = {
        "@type": T + "envoy.config.listener.v3.Listener",
        "name": "scoring",
        "address": {"socket_address": {"address": settings.listen_host, "port_value": settings.listen_port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}],
    }
    if settings.tls:
        listener["filter_chains"][0]["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": T + "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "common_tls_context": {
                    # azureml-fe served TLS 1.2 only; we accept 1.2 and 1.3.
                    "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                    "alpn_protocols": ["h2", "http/1.1"],
                    "tls_certificate_sds_secret_configs": [
                        {"name": TLS_SECRET, "sds_config": _path_source(settings.config_dir, "sds-tls.yaml")}
                    ],
                },
            },
        }
    return listener


def _sds(settings: RouterSettings) -> list[dict]:
    assert settings.tls is not None
    return [
        {
            "@type": T + "envoy.extensions.transport_sockets.tls.v3.Secret",
            "name": TLS_SECRET,
            "tls_certificate": {
                "certificate_chain": {"filename": settings.tls.cert_path},
                "private_key": {"filename": settings.tls.key_path},
                # A mounted Kubernetes Secret is updated by swapping a symlink in its directory:
                # watching the directory reloads both files together, with no restart.
                "watched_directory": {"path": str(Path(settings.tls.cert_path).parent)},
            },
        }
    ]


# --------------------------------------------------------------------------- routes


def _disabled() -> dict:
    return {"@type": T + "envoy.config.route.v3.FilterConfig", "disabled": True}


def _key_auth(route: ServiceRoute, settings: RouterSettings) -> dict:
    config: dict = {
        API_KEY_FILTER: {
            "@type": T + "envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute",
            "credentials": [
                {"key": key, "client": f"{route.name}-{'primary' if i == 0 else 'secondary'}"} for i, key in enumerate(route.keys)
            ],
            # Forwarding is not inherited from the filter level: set it on every route.
            "forwarding": {"header": CLIENT_HEADER, "hide_credentials": True},
        }
    }
    if settings.jwt:
        config[JWT_FILTER] = {"@type": T + "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig", "disabled": True}
    return config


def _token_auth() -> dict:
    return {
        API_KEY_FILTER: _disabled(),
        JWT_FILTER: {"@type": T + "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig", "requirement_name": JWT_PROVIDER},
    }


def _open_route(settings: RouterSettings) -> dict:
    """No authentication: `auth: none` services and the router's own direct answers (which reach no model)."""
    config = {API_KEY_FILTER: _disabled()}
    if settings.jwt:
        config[JWT_FILTER] = {"@type": T + "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig", "disabled": True}
    return config


def _milliseconds(ms: int) -> str:
    return f"{ms / 1000:.3f}s"


def _answer(name: str, match: dict, status: int, text: str, settings: RouterSettings) -> dict:
    """A route the router answers itself (JSON through local_reply_config, except the plain-text 200)."""
    return {
        "name": name,
        "match": match,
        "direct_response": {"status": status, "body": {"inline_string": text}},
        "typed_per_filter_config": _open_route(settings),
    }


def _forward(route: ServiceRoute, auth: dict) -> dict:
    return {
        "name": route.name,
        "match": {"prefix": route.prefix},
        "route": {
            "cluster": route.cluster_name,
            "prefix_rewrite": "/",
            # Envoy's default is 15 s: always the service's own scoring timeout.
            "timeout": _milliseconds(route.scoring_timeout_ms),
            # The listener's stream idle timeout must not cut a model that is silent while scoring.
            "idle_timeout": _milliseconds(max(route.scoring_timeout_ms, STREAM_IDLE_TIMEOUT_MS)),
            "retry_policy": {
                # Only retries that cannot run a request twice: the request never reached a replica.
                "retry_on": "connect-failure,refused-stream,reset-before-request",
                "num_retries": 2,
                "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                          "typed_config": {"@type": T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
                "host_selection_retry_max_attempts": 3,
            },
        },
        "typed_per_filter_config": auth,
    }


def _service_route(route: ServiceRoute, settings: RouterSettings) -> dict:
    """A service's route, by its auth setting: only the three known values forward a request, each with
    its own filters. A refused service, a token service on a router without token validation and any
    other auth value get an answer from the router instead, and reach no model."""
    prefix = {"prefix": route.prefix}
    reasons = "; ".join(route.problems)
    match route.auth:
        case "key" | "token" | "none" if route.problems:
            return _answer(route.name, prefix, 503, f"{SERVICE_REFUSED}: {reasons}", settings)
        case "key":
            return _forward(route, _key_auth(route, settings))
        case "token" if settings.jwt:
            return _forward(route, _token_auth())
        case "token":  # fail closed: no token can be validated here
            return _answer(route.name, prefix, 401, TOKEN_AUTH_MISSING, settings)
        case "none":
            return _forward(route, _open_route(settings))
        case _:
            return _answer(route.name, prefix, 403, f"{INVALID_AUTH}: {reasons}", settings)


def _routes(routes: list[ServiceRoute], settings: RouterSettings) -> list[dict]:
    """The route table; a service whose name cannot be a URL segment gets no route at all."""
    virtual_routes = [_answer("health", {"path": HEALTH_PATH}, 200, "Healthy", settings)]
    virtual_routes += [_service_route(r, settings) for r in sorted(routes, key=lambda r: r.name) if is_service_name(r.name)]
    virtual_routes.append(_answer("unknown-service", {"prefix": "/"}, 404, "Unknown service: use /api/v1/service/<name>/score", settings))
    return [
        {
            "@type": T + "envoy.config.route.v3.RouteConfiguration",
            "name": ROUTE_CONFIG,
            "virtual_hosts": [{"name": "scoring", "domains": ["*"], "routes": virtual_routes}],
        }
    ]


# --------------------------------------------------------------------------- clusters and endpoints


def _cluster(route: ServiceRoute) -> dict:
    return {
        "@type": T + "envoy.config.cluster.v3.Cluster",
        "name": route.cluster_name,
        "type": "STATIC",
        "load_assignment": _endpoints(route),
        "connect_timeout": "1s",
        # Least request, scanning every replica: with one request per replica, the default two random
        # choices would often queue behind a busy replica while another sits idle.
        "load_balancing_policy": {
            "policies": [
                {
                    "typed_extension_config": {
                        "name": "envoy.load_balancing_policies.least_request",
                        "typed_config": {
                            "@type": T + "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
                            "selection_method": "FULL_SCAN",
                        },
                    }
                }
            ]
        },
        "circuit_breakers": {
            "thresholds": [
                {
                    "priority": "DEFAULT",
                    "max_connections": 100000,
                    "max_requests": 100000,
                    "max_pending_requests": route.queue_capacity(),
                    "max_retries": 10,
                    "track_remaining": True,
                }
            ],
            # HTTP/1.1 upstream: one connection carries one request, so this is the per-replica concurrency cap.
            "per_host_thresholds": [{"max_connections": route.max_concurrent}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}},
                "common_http_protocol_options": {"idle_timeout": "60s"},
            }
        },
    }


def _jwks_cluster(settings: RouterSettings) -> dict | None:
    if not settings.jwt or settings.jwt.local_jwks_path or not settings.jwt.jwks_uri:
        return None
    from urllib.parse import urlparse

    uri = urlparse(settings.jwt.jwks_uri)
    port = uri.port or (443 if uri.scheme == "https" else 80)
    cluster = {
        "@type": T + "envoy.config.cluster.v3.Cluster",
        "name": "jwks",
        "type": "LOGICAL_DNS",
        "dns_lookup_family": "V4_ONLY",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": "jwks",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": uri.hostname, "port_value": port}}}}]}],
        },
    }
    if uri.scheme == "https":
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", "sni": uri.hostname},
        }
    return cluster


def _endpoints(route: ServiceRoute) -> dict:
    return {
        "cluster_name": route.cluster_name,
        "endpoints": [
            {
                "lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": e.host, "port_value": e.port}}}}
                    for e in sorted(route.endpoints)
                ]
            }
        ],
    }


def _clusters(routes: list[ServiceRoute], settings: RouterSettings) -> list[dict]:
    """One cluster per served service (a refused one has none), plus `jwks` for a remote JWKS."""
    clusters = [_cluster(r) for r in sorted(routes, key=lambda r: r.cluster_name) if not r.problems]
    jwks = _jwks_cluster(settings)
    return clusters + ([jwks] if jwks else [])


def render_dynamic(routes: Iterable[ServiceRoute], settings: RouterSettings) -> dict[str, dict]:
    """Every dynamic file: name -> document (deterministic for the same inputs). Routes pass
    `refuse_unsafe` first, so no service's values can make Envoy reject a shared file."""
    checked = refuse_unsafe(routes)
    files = {"cds.yaml": dynamic_file(_clusters(checked, settings)), "rds.yaml": dynamic_file(_routes(checked, settings))}
    files["lds.yaml"] = dynamic_file([_listener(settings)])
    if settings.tls:
        files["sds-tls.yaml"] = dynamic_file(_sds(settings))
    return files
