"""Envoy configuration with azureml-fe semantics: pure builders (routes and settings in, documents out).
They are served to Envoy as files (file-based xDS) by `router/envoy_files.py`.

Layout of the config directory (Envoy watches it; only a rename triggers a reload):
  bootstrap.json      static: admin on 127.0.0.1 only, LDS + CDS from files below
  lds.json            the listener: request-id guard -> body_size_limit -> jwt_authn -> rbac -> api_key_auth -> buffer -> router
  rds.pb              routes, one prefix per service: /api/v1/service/<name>/ (rewritten to /); an endpoint's
                      prefix spreads over its versions (pin header, weighted clusters, mirrors: `_endpoint_routes`)
  rds-peer.pb         with a peer port: the peer listener's routes (service-wide limits, below)
  cds.pb              one cluster per served service, model-<namespace>-<name>, with its ready replicas
  sds-tls.json        the TLS certificate (rotates without restart)

The files that grow with the number of services are binary protos (`.pb`, router/envoy_proto.py), which Envoy
parses several times faster than JSON; the builders here render every file as a JSON-shaped document either way.

Every dynamic file carries a `version_info` that hashes its resources; Envoy reports the version it
serves per file (`SUBSCRIPTION_STATS`), so the control plane can tell a file Envoy rejected.

Endpoints are inline in CDS rather than file-based EDS: every file subscription holds an
inotify instance, and with the usual limit of 128 per user Envoy stops loading config
beyond ~120 services (measured; bench/router.py). A CDS update replaces only the
clusters whose replicas changed; in-flight requests finish on the old cluster object.

Limits hold per service with several router replicas: the live routers split each service's concurrency
cap exactly (router/ownership.py), each Envoy enforcing its slots and the queue they imply; a router that
holds none forwards the service's requests untouched to an owner's peer listener (rds-peer.pb: the same
routes, never forwarded again), where they are authenticated and served. A request's
body is buffered whole before a replica is chosen, so a slow client holds no replica slot; a dead
replica is ejected by outlier detection after its first failed connections.

Routes pass `refuse_unsafe` (router/spec.py) first: a refused service renders as a JSON error and no
cluster, and a route forwards requests only for the three known auth values. A token route also carries its
service's `TokenAuthorization`: its own audience as a jwt_authn requirement, roles and clients as an RBAC
policy on the verified token; the JWKS is fetched only from a host whose certificate validates.

A versioned endpoint (router/spec.py: EndpointRoute) has the routes of one service (its name, prefix and
auth) that forward to its versions' clusters: each version is a ServiceRoute of its own (cluster, queue,
limits) with no route on its own prefix. Endpoints pass `refuse_unsafe_endpoints`: a refused one renders
as a refused service does.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

from router.ownership import Ownership, ownership
from router.spec import (
    HEALTH_PATH,
    VERSION_HEADER,
    EndpointRoute,
    JwtSettings,
    RouterSettings,
    ServiceRoute,
    TokenAuthorization,
    VersionShare,
    is_ip_address,
    is_service_name,
    refuse_unsafe,
    refuse_unsafe_endpoints,
    served_versions,
)

T = "type.googleapis.com/"
ROUTE_CONFIG = "models"
STAT_PREFIX = "router"  # the connection manager's stats: http.router.*
# The peer listener (service-wide limits, below): its route table, in a file of its own (a file-based RDS
# subscription holds one route table), and its stats, apart from the clients' http.router.*.
PEER_ROUTE_CONFIG = "peer"
LISTENERS_FILE = "lds.json"
CLUSTERS_FILE = "cds.pb"
ROUTES_FILE = "rds.pb"
PEER_ROUTES_FILE = "rds-peer.pb"
TLS_SECRET_FILE = "sds-tls.json"
PEER_STAT_PREFIX = "peer"
TLS_SECRET = "router-tls"
JWT_PROVIDER = "entra"
API_KEY_FILTER = "envoy.filters.http.api_key_auth"
JWT_FILTER = "envoy.filters.http.jwt_authn"
RBAC_FILTER = "envoy.filters.http.rbac"
BUFFER_FILTER = "envoy.filters.http.buffer"
# jwt_authn writes a verified token's claims to the request's dynamic metadata, namespace JWT_FILTER,
# under this key; the RBAC filter reads roles and azp/appid from there
# (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/jwt_authn/v3/config.proto).
JWT_PAYLOAD = "jwt_payload"
ROLES_CLAIM = "roles"  # Entra app roles, a list (https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference)
CLIENT_ID_CLAIMS = ("azp", "appid")  # the calling application: azp in v2.0 tokens, appid in v1.0 tokens
JWT_WRONG_AUDIENCE = "jwt_authn_access_denied{Audiences_in_Jwt_are_not_allowed}"  # jwt_authn's code details
STREAM_IDLE_TIMEOUT_MS = 300_000  # a stalled upload or download is dropped after 5 minutes without a byte
OUTLIER_LOCAL_FAILURES = 2  # connection failures in a row that eject a replica (`_outlier_detection`)
OUTLIER_EJECTION_SECONDS = 5  # the first ejection's length; Envoy multiplies it for a replica ejected again
HEAP_REFUSE_FRACTION = 0.95  # of RouterSettings.max_heap_bytes: new requests get 503 above it
CLIENT_HEADER = "x-aksinf-client"  # which key (primary/secondary) authenticated; the key itself is hidden
TOKEN_AUTH_MISSING = "Token authentication is not configured on this router (no issuer/audience): no token can be accepted"
INVALID_AUTH = "This service's auth setting is invalid, so the router refuses every request"
# A refused service's answer: its settings are invalid, or (local mode) its server failed to start; the reasons follow.
SERVICE_REFUSED = "The router does not serve this service"
# The stats prefix of the subscription that loads each dynamic file: `<prefix>.version_text` is the
# version_info Envoy serves, `<prefix>.update_rejected` counts the updates it refused.
SUBSCRIPTION_STATS = {
    LISTENERS_FILE: "listener_manager.lds",
    CLUSTERS_FILE: "cluster_manager.cds",
    ROUTES_FILE: f"http.{STAT_PREFIX}.rds.{ROUTE_CONFIG}",
    PEER_ROUTES_FILE: f"http.{PEER_STAT_PREFIX}.rds.{PEER_ROUTE_CONFIG}",
    TLS_SECRET_FILE: f"sds.{TLS_SECRET}",
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
    "version": "%RESP(AZUREML-MODEL-DEPLOYMENT)%",  # the endpoint version that answered (spec.VERSION_HEADER)
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


def _overload_manager(settings: RouterSettings) -> dict:
    """Caps on what Envoy holds: downstream connections, and with a heap budget, new requests refused
    (503) above HEAP_REFUSE_FRACTION of it. Bodies are buffered whole before a replica is chosen, so
    concurrent uploads hold up to max_request_bytes each; refusing new ones near the budget keeps the
    container below its memory limit, where an OOM kill would drop every request on this replica
    (https://www.envoyproxy.io/docs/envoy/latest/configuration/operations/overload_manager/overload_manager)."""
    monitors = [
        {
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": {
                "@type": T + "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                "max_active_downstream_connections": 50000,
            },
        }
    ]
    manager: dict = {"refresh_interval": "0.25s", "resource_monitors": monitors}
    if settings.max_heap_bytes:
        heap = "envoy.resource_monitors.fixed_heap"
        monitors.append(
            {"name": heap, "typed_config": {"@type": T + "envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig", "max_heap_size_bytes": settings.max_heap_bytes}}
        )
        manager["actions"] = [
            {"name": "envoy.overload_actions.stop_accepting_requests", "triggers": [{"name": heap, "threshold": {"value": HEAP_REFUSE_FRACTION}}]}
        ]
    return manager


def render_bootstrap(settings: RouterSettings) -> dict:
    return {
        "node": {"id": settings.node_id, "cluster": "aks-inference"},
        "admin": {"address": {"socket_address": {"address": settings.admin_host, "port_value": settings.admin_port}}},
        "dynamic_resources": {
            "lds_config": _path_source(settings.config_dir, LISTENERS_FILE),
            "cds_config": _path_source(settings.config_dir, CLUSTERS_FILE),
        },
        "overload_manager": _overload_manager(settings),
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
        # jwt_authn answers 403 for a token issued for another audience; such a token is not valid here,
        # which is 401 (RFC 6750, section 3.1: invalid_token), as for any other token jwt_authn refuses.
        {"filter": _details_are(JWT_WRONG_AUDIENCE), "status_code": 401},
        mapper("UO", 503, "Too many requests for this service (overloaded): its queue is full, retry later"),
        mapper("OM", 503, "The router is overloaded (memory held by requests in progress): retry later"),
        mapper("UH", 503, "No ready replicas for this service"),
        mapper("UF", 503, "Replica unreachable (connection failure)"),
        # azureml-fe's answer when the model process dies or drops the connection mid-request.
        mapper("UC", 502, "Replica closed connection before replying"),
        mapper("UT", 504, "Scoring timeout: the model did not answer within scoringTimeoutMs"),
        mapper("NR", 404, "Unknown service"),
        {"filter": status_is(408), "body": {"inline_string": f"Request timeout: the whole request must arrive within {settings.request_timeout_ms} ms"}},
        {"filter": status_is(413), "body": {"inline_string": f"Payload too large: the limit is {settings.max_request_bytes} bytes"}},
    ]


def _details_are(details: str) -> dict:
    """An access-log filter: the response's code details (%RESPONSE_CODE_DETAILS%) are exactly `details`
    (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/access_loggers/filters/cel/v3/cel.proto)."""
    return {
        "extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {"@type": T + "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter", "expression": f"response.code_details == {json.dumps(details)}"},
        }
    }


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


def _jwt_filters(jwt: JwtSettings, audiences: Iterable[str]) -> list[dict]:
    """jwt_authn, then RBAC. One provider (the router's issuer and audience); each token route names a
    requirement: the provider as is, or with a service's own audience instead (`_requirement`). The
    verified payload goes to dynamic metadata, where a token route's RBAC rules (`_token_auth`) check
    roles and client; the filter-level RBAC has no rules, so it enforces nothing elsewhere."""
    provider: dict = {
        "issuer": jwt.issuer,
        "audiences": list(jwt.audiences),
        "forward": False,  # the model never sees the token
        "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        "require_expiration": True,
        "payload_in_metadata": JWT_PAYLOAD,
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
    requirements = {JWT_PROVIDER: {"provider_name": JWT_PROVIDER}}
    for audience in sorted(set(audiences)):
        # provider_and_audiences replaces the provider's audiences for this requirement
        # (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/jwt_authn/v3/config.proto).
        requirements[_requirement(audience)] = {"provider_and_audiences": {"provider_name": JWT_PROVIDER, "audiences": [audience]}}
    return [
        {
            "name": JWT_FILTER,
            "typed_config": {
                "@type": T + "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {JWT_PROVIDER: provider},
                "requirement_map": requirements,
            },
        },
        # No rules here: "If absent, no enforcing RBAC policy will be applied"; token routes bring their own
        # (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/rbac/v3/rbac.proto).
        {"name": RBAC_FILTER, "typed_config": {"@type": T + "envoy.extensions.filters.http.rbac.v3.RBAC"}},
    ]


def _requirement(audience: str | None) -> str:
    """The jwt_authn requirement a token route names: the router's audience, or the service's own."""
    return JWT_PROVIDER if audience is None else f"{JWT_PROVIDER}-audience:{audience}"


def _http_filters(settings: RouterSettings, audiences: Iterable[str] = ()) -> list[dict]:
    filters = [
        _request_id_guard(),
        {
            "name": "envoy.filters.http.body_size_limit",
            "typed_config": {
                "@type": T + "envoy.extensions.filters.http.body_size_limit.v3.BodySizeLimit",
                "max_request_bytes": settings.max_request_bytes,
            },
        },
    ]
    if settings.jwt:
        filters += _jwt_filters(settings.jwt, audiences)
    filters += [
        {
            "name": API_KEY_FILTER,
            "typed_config": {
                "@type": T + "envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuth",
                # Keys live on each route: a key opens exactly one service.
                "key_sources": [{"header": "Authorization"}],
            },
        },
        # Last before the router, after authentication (an unauthenticated request is refused on its
        # headers, before any body is held). The whole body arrives before the router picks a
        # replica, so a client trickling its upload holds Envoy memory (at most max_request_bytes
        # per request) instead of a replica slot
        # (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/buffer_filter).
        {
            "name": BUFFER_FILTER,
            "typed_config": {
                "@type": T + "envoy.extensions.filters.http.buffer.v3.Buffer",
                "max_request_bytes": settings.max_request_bytes,
            },
        },
        {"name": "envoy.filters.http.router", "typed_config": {"@type": T + "envoy.extensions.filters.http.router.v3.Router"}},
    ]
    return filters


def _listener(settings: RouterSettings, audiences: Iterable[str] = ()) -> dict:
    hcm = {
        "@type": T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": STAT_PREFIX,
        "codec_type": "AUTO",
        "generate_request_id": True,
        # Envoy may otherwise rewrite one character of a UUID to carry a trace decision: a client's
        # UUID reaches the logs and the model byte for byte.
        "request_id_extension": {"typed_config": {"@type": T + "envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig", "pack_trace_reason": False}},
        "always_set_request_id_in_response": True,
        "rds": {"route_config_name": ROUTE_CONFIG, "config_source": _path_source(settings.config_dir, ROUTES_FILE)},
        "http_filters": _http_filters(settings, audiences),
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
        # The whole request (headers and buffered body) must arrive within this, else 408
        # (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto).
        "request_timeout": _milliseconds(settings.request_timeout_ms),
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
                        {"name": TLS_SECRET, "sds_config": _path_source(settings.config_dir, TLS_SECRET_FILE)}
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


def _jwt_skipped(settings: RouterSettings) -> dict:
    """jwt_authn off for a route that is not a token route (the filter is in the chain only with token settings)."""
    return {JWT_FILTER: {"@type": T + "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig", "disabled": True}} if settings.jwt else {}


def _key_auth(route: ServiceRoute | EndpointRoute, settings: RouterSettings) -> dict:
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
    return {**config, **_jwt_skipped(settings)}


def _token_auth(rules: TokenAuthorization) -> dict:
    """A token route: its jwt_authn requirement (a wrong audience is refused there, 401), and with roles or
    clients to check, an RBAC policy on the verified payload (a token without them gets 403)."""
    config = {
        API_KEY_FILTER: _disabled(),
        JWT_FILTER: {"@type": T + "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig", "requirement_name": _requirement(rules.audience)},
    }
    principals = [_claim({"list_match": {"one_of": {"string_match": {"exact": role}}}}, ROLES_CLAIM) for role in rules.required_roles]
    if rules.allowed_client_ids:
        # Client ids are GUIDs, which Entra writes in lower case; matched in any case.
        clients = [_claim({"string_match": {"exact": client, "ignore_case": True}}, claim) for claim in CLIENT_ID_CLAIMS for client in rules.allowed_client_ids]
        principals.append({"or_ids": {"ids": clients}})
    if principals:
        config[RBAC_FILTER] = {
            "@type": T + "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
            "rbac": {
                "rules": {
                    "action": "ALLOW",
                    "policies": {"token-authorization": {"permissions": [{"any": True}], "principals": [{"and_ids": {"ids": principals}}]}},
                }
            },
        }
    return config


def _claim(value: dict, claim: str) -> dict:
    """An RBAC principal: the verified token's `claim` matches `value` (a ValueMatcher)."""
    return {"metadata": {"filter": JWT_FILTER, "path": [{"key": JWT_PAYLOAD}, {"key": claim}], "value": value}}


def _service_audiences(routes: Iterable[ServiceRoute | EndpointRoute]) -> list[str]:
    """The own audiences of served token services and endpoints: each needs a jwt_authn requirement in the listener."""
    return sorted({r.token_authorization.audience for r in routes if r.auth == "token" and not r.problems and r.token_authorization.audience})


def _open_route(settings: RouterSettings) -> dict:
    """No authentication: `auth: none` services and the router's own direct answers (which reach no model)."""
    return {API_KEY_FILTER: _disabled(), **_jwt_skipped(settings)}


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


# The request's deadline, for the model replica (aksinf_runtime/deadlines.py reads them; a test keeps the
# names equal): when Envoy received the request's first byte, epoch ms, and the service's scoring timeout.
# The replica refuses to start run() past their sum. Envoy's plain start time, not a CEL sum: the CEL
# formatter costs Envoy CPU on every request.
RECEIVED_HEADER = "x-aksinf-received-ms"
TIMEOUT_HEADER = "x-aksinf-timeout-ms"


def _deadline_headers(route: ServiceRoute) -> list[dict]:
    """The deadline headers, replacing any value the client sent
    (https://www.envoyproxy.io/docs/envoy/latest/configuration/advanced/substitution_formatter: START_TIME)."""
    values = {RECEIVED_HEADER: "%START_TIME(%s%3f)%", TIMEOUT_HEADER: str(route.scoring_timeout_ms)}
    return [{"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"} for key, value in values.items()]


def _forward(route: ServiceRoute, auth: dict) -> dict:
    return {
        "name": route.name,
        "match": {"prefix": route.prefix},
        "request_headers_to_add": _deadline_headers(route),
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


def _guarded(item: ServiceRoute | EndpointRoute, settings: RouterSettings, forward: Callable[[dict], list[dict]]) -> list[dict]:
    """A service's or an endpoint's routes, by its auth setting: only the three known values forward a
    request (`forward` builds the routes from the per-filter auth config), each with its own filters. A
    refused one, a token one on a router without token validation and any other auth value get an answer
    from the router instead, and reach no model."""
    prefix = {"prefix": item.prefix}
    reasons = "; ".join(item.problems)
    match item.auth:
        case "key" | "token" | "none" if item.problems:
            return [_answer(item.name, prefix, 503, f"{SERVICE_REFUSED}: {reasons}", settings)]
        case "key":
            return forward(_key_auth(item, settings))
        case "token" if settings.jwt:
            return forward(_token_auth(item.token_authorization))
        case "token":  # fail closed: no token can be validated here
            return [_answer(item.name, prefix, 401, TOKEN_AUTH_MISSING, settings)]
        case "none":
            return forward(_open_route(settings))
        case _:
            return [_answer(item.name, prefix, 403, f"{INVALID_AUTH}: {reasons}", settings)]


def _service_route(route: ServiceRoute, settings: RouterSettings) -> list[dict]:
    return _guarded(route, settings, lambda auth: [_forward(route, auth)])


def _version_header(version: str) -> dict:
    """The response header naming the version that answered (a model's own value is replaced)."""
    return {"header": {"key": VERSION_HEADER, "value": version}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _endpoint_routes(endpoint: EndpointRoute, versions: Mapping[str, ServiceRoute], settings: RouterSettings) -> list[dict]:
    """An endpoint's routes, all behind the endpoint's auth (`_guarded`: a pin never bypasses it), first match wins:

    1. one pin route per version that can serve (`served_versions`, shadows and 0 % versions included, so
       they can be tested): request header VERSION_HEADER exactly the version's name -> its cluster, with its
       own scoring timeout;
    2. any other VERSION_HEADER value -> 404 naming the versions (never silently another version);
    3. the endpoint route: Envoy weighted clusters over the versions with weight > 0 (whole percents that sum
       to 100: Envoy picks one with probability weight / sum), each adding the response header VERSION_HEADER,
       and a request mirror per shadow at its mirror_percent
       (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-msg-config-route-v3-weightedcluster).
       Envoy has one timeout per route, not per weighted cluster: the endpoint route's is the largest scoring
       timeout of its answering versions. A mirrored copy's answer is dropped and the caller never waits for
       it; it goes through the shadow's own cluster (its own queue and limits). The route retries as `_forward`.
    Every route is named after the endpoint (the access log's `service`); the version shows in its `version`.
    """
    served = served_versions(endpoint, versions)
    return _guarded(endpoint, settings, lambda auth: [
        *(_pinned(endpoint, share, route, auth) for share, route in served),
        {
            "name": endpoint.name,
            "match": {"prefix": endpoint.prefix, "headers": [{"name": VERSION_HEADER, "present_match": True}]},
            "direct_response": {"status": 404, "body": {"inline_string": f"Unknown version: {VERSION_HEADER} may name {', '.join(s.version for s, _ in served)}"}},
            "typed_per_filter_config": auth,
        },
        _weighted(endpoint, served, auth),
    ])


def _as_endpoint(endpoint: EndpointRoute, route: ServiceRoute, auth: dict, timeout_ms: int) -> dict:
    """`_forward` of a version's route on the endpoint's name and prefix, with `timeout_ms`."""
    return _forward(replace(route, name=endpoint.name, scoring_timeout_ms=timeout_ms), auth)


def _pinned(endpoint: EndpointRoute, share: VersionShare, route: ServiceRoute, auth: dict) -> dict:
    pinned = _as_endpoint(endpoint, route, auth, route.scoring_timeout_ms)
    pinned["match"]["headers"] = [{"name": VERSION_HEADER, "string_match": {"exact": share.version}}]
    pinned["route"]["cluster"] = route.cluster_name
    pinned["response_headers_to_add"] = [_version_header(share.version)]
    return pinned


def _weighted(endpoint: EndpointRoute, served: list[tuple[VersionShare, ServiceRoute]], auth: dict) -> dict:
    answering = [(share, route) for share, route in served if share.weight > 0]  # never empty once the endpoint passed
    weighted = _as_endpoint(endpoint, answering[0][1], auth, max(route.scoring_timeout_ms for _, route in answering))
    action = weighted["route"]
    del action["cluster"]
    action["weighted_clusters"] = {
        "clusters": [
            {"name": route.cluster_name, "weight": share.weight, "response_headers_to_add": [_version_header(share.version)]}
            for share, route in answering
        ]
    }
    mirrors = [(share, route) for share, route in served if share.mirror_percent > 0]
    if mirrors:
        action["request_mirror_policies"] = [
            {"cluster": route.cluster_name, "runtime_fraction": {"default_value": {"numerator": share.mirror_percent, "denominator": "HUNDRED"}}}
            for share, route in mirrors
        ]
    return weighted


def _routes(routes: list[ServiceRoute], endpoints: list[EndpointRoute], settings: RouterSettings) -> list[dict]:
    """The route table, by URL segment. A service whose name cannot be a URL segment gets no route at all, nor
    does a version (`endpoint` set): it is served through its endpoint's routes only, and not at all while
    that endpoint is absent or does not list it (its cluster stays, ready for when it does)."""
    versions = {r.name: r for r in routes}
    named = [(r.name, _service_route(r, settings)) for r in routes if is_service_name(r.name) and r.endpoint is None]
    named += [(e.name, _endpoint_routes(e, versions, settings)) for e in endpoints if is_service_name(e.name)]
    virtual_routes = [_answer("health", {"path": HEALTH_PATH}, 200, "Healthy", settings)]
    virtual_routes += [route for _, rendered in sorted(named, key=lambda pair: pair[0]) for route in rendered]
    virtual_routes.append(_answer("unknown-service", {"prefix": "/"}, 404, "Unknown service: use /api/v1/service/<name>/score", settings))
    return [
        {
            "@type": T + "envoy.config.route.v3.RouteConfiguration",
            "name": ROUTE_CONFIG,
            "virtual_hosts": [{"name": "scoring", "domains": ["*"], "routes": virtual_routes}],
        }
    ]


# --------------------------------------------------------------------------- clusters and endpoints


def _outlier_detection() -> dict:
    """A replica Envoy cannot reach (its process died: connections refused or reset) is ejected after
    OUTLIER_LOCAL_FAILURES such failures in a row, for OUTLIER_EJECTION_SECONDS at first, and its
    requests retry on another replica (the route's retry policy), so least-request stops choosing a
    dead replica that shows 0 active requests. Only locally originated failures count: a model's own
    5xx answers (a bad input, an exception in run()) never eject it; Envoy counts a timeout as locally
    originated too, so a replica that exceeds scoringTimeoutMs twice in a row sits out 5 s (its peers
    take the traffic; alone, panic routing keeps it serving). An ejected replica comes back
    after the ejection time (checked every second); if every replica is ejected, Envoy's panic
    routing sends to all of them rather than to none
    (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier).
    No active health checks: a model serving maxConcurrentRequestsPerContainer requests has no free
    worker to answer them (the inference server runs that many workers), so a busy replica would be
    taken for a dead one; the kubelet's readiness probe, with v1's thresholds, removes a hung replica
    from the EndpointSlice instead."""
    return {
        "split_external_local_origin_errors": True,
        "consecutive_local_origin_failure": OUTLIER_LOCAL_FAILURES,
        "enforcing_consecutive_local_origin_failure": 100,
        "enforcing_local_origin_success_rate": 0,
        "enforcing_consecutive_5xx": 0,
        "enforcing_consecutive_gateway_failure": 0,
        "enforcing_success_rate": 0,
        "interval": "1s",
        "base_ejection_time": f"{OUTLIER_EJECTION_SECONDS}s",
        "max_ejection_time": "30s",
        "max_ejection_percent": 100,
    }


def _http1_upstream() -> dict:
    """HTTP/1.1 to the upstream (a replica, or an owner router's peer listener); idle connections closed after 60 s."""
    return {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {}},
            "common_http_protocol_options": {"idle_timeout": "60s"},
        }
    }


def _cluster(route: ServiceRoute, settings: RouterSettings) -> dict:
    slots = ownership(route, settings).local_slots
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
                    "max_pending_requests": route.queue_capacity(settings.router_replicas, share=slots),
                    "max_retries": 10,
                    "track_remaining": True,
                }
            ],
            # HTTP/1.1 upstream: one connection carries one request, so this is the per-replica
            # concurrency cap: this router's share of maxConcurrentRequestsPerContainer.
            "per_host_thresholds": [{"max_connections": slots}],
        },
        "outlier_detection": _outlier_detection(),
        "typed_extension_protocol_options": _http1_upstream(),
    }


def _jwks_cluster(settings: RouterSettings) -> dict | None:
    """The remote JWKS host. Over https its certificate must chain to `jwks_ca_bundle` and name the
    host: a DNS SAN for a name, an IP SAN for an address (Envoy checks the SAN only when told to:
    https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/tls/v3/common.proto).
    SNI carries the name; an address is never sent as SNI (RFC 6066, section 3)."""
    if not settings.jwt or settings.jwt.local_jwks_path or not settings.jwt.jwks_uri:
        return None
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
        address = is_ip_address(uri.hostname or "")
        tls: dict = {
            "@type": T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "validation_context": {
                    "trusted_ca": {"filename": settings.jwt.jwks_ca_bundle},
                    "match_typed_subject_alt_names": [{"san_type": "IP_ADDRESS" if address else "DNS", "matcher": {"exact": uri.hostname}}],
                }
            },
        }
        if not address:
            tls["sni"] = uri.hostname
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": tls}
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
    clusters = [_cluster(r, settings) for r in sorted(routes, key=lambda r: r.cluster_name) if not r.problems]
    jwks = _jwks_cluster(settings)
    return clusters + ([jwks] if jwks else [])


# --------------------------------------------------------------------------- service-wide limits: forwarding to slot owners
# router/ownership.py decides which routers hold a service's replica slots; a router that holds none
# forwards the service's requests, untouched, to the holders' peer listener, which serves them exactly as
# its scoring listener would (same filters, authentication, answers) from a route table that never forwards.

PEER_LISTENER = "peer"
# A forwarded request may wait up to maxQueueWaitMs in the owner's queue before its scoring timeout starts:
# the hop waits for both and this much more, so the owner's own answer (504 included) reaches the client.
PEER_HOP_MARGIN_MS = 1000


def _peer_cluster_name(route: ServiceRoute) -> str:
    return f"peer-{route.namespace}-{route.name}"


def _forwarding(route: ServiceRoute, settings: RouterSettings) -> Ownership | None:
    """The ownership of a served service whose requests this router forwards, else None."""
    if route.problems:
        return None
    owned = ownership(route, settings)
    return owned if owned.forwards else None


def _forwarding_hop(settings: RouterSettings) -> dict:
    """A forwarding route's filters: no authentication here (the owner runs it on the headers as the
    client sent them, which this hop keeps: the key or token is not hidden), and no body buffer (the
    owner buffers before it takes a replica slot, and refuses an unauthenticated upload on its headers)."""
    return {**_open_route(settings), BUFFER_FILTER: {"@type": T + "envoy.extensions.filters.http.buffer.v3.BufferPerRoute", "disabled": True}}


def _forward_to_owners(route: ServiceRoute, served: dict, settings: RouterSettings) -> dict:
    """`served` (the service's own route entry) sent to its owners' peer listener instead: the path as the
    client sent it (the owner's route matches it), the same retries (a refused connection tries another owner)."""
    hop = copy.deepcopy(served)
    action = hop["route"]
    action["cluster"] = _peer_cluster_name(route)
    action.pop("prefix_rewrite", None)
    action["timeout"] = _milliseconds(route.scoring_timeout_ms + route.max_queue_wait_ms + PEER_HOP_MARGIN_MS)
    hop["typed_per_filter_config"] = _forwarding_hop(settings)
    return hop


def _with_forwarding(tables: list[dict], routes: list[ServiceRoute], settings: RouterSettings) -> list[dict]:
    """The scoring listener's route table (ROUTE_CONFIG) with the services this router forwards sent to their owners."""
    forwarded = {route.name: route for route in routes if _forwarding(route, settings)}

    def scoring(entry: dict) -> dict:
        return _forward_to_owners(forwarded[entry["name"]], entry, settings) if entry.get("name") in forwarded and "route" in entry else entry

    return [
        {**table, "virtual_hosts": [{**host, "routes": [scoring(e) for e in host["routes"]]} for host in table["virtual_hosts"]]}
        if table["name"] == ROUTE_CONFIG
        else table
        for table in tables
    ]


def _peer_route_tables(tables: list[dict]) -> list[dict]:
    """The peer listener's route table: the scoring table before forwarding, so a forwarded request is
    served here and never forwarded again, whatever this router's view of the owners."""
    return [{**table, "name": PEER_ROUTE_CONFIG} for table in tables if table["name"] == ROUTE_CONFIG]


def _peer_clusters(routes: list[ServiceRoute], settings: RouterSettings) -> list[dict]:
    """One cluster per forwarded service: its owners' peer listeners. The owners' queues bound the
    service, so this hop's own limits are never what refuses a request."""
    clusters = []
    for route in sorted(routes, key=lambda r: r.cluster_name):
        owned = _forwarding(route, settings)
        if owned is None:
            continue
        name = _peer_cluster_name(route)
        owners = [{"endpoint": {"address": {"socket_address": {"address": o.host, "port_value": o.port}}}} for o in owned.owners]
        clusters.append(
            {
                "@type": T + "envoy.config.cluster.v3.Cluster",
                "name": name,
                "type": "STATIC",
                "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": owners}]},
                "connect_timeout": "1s",
                "lb_policy": "LEAST_REQUEST",
                "circuit_breakers": {
                    "thresholds": [{"priority": "DEFAULT", "max_connections": 100000, "max_pending_requests": 100000, "max_requests": 100000, "max_retries": 10}]
                },
                "outlier_detection": _outlier_detection(),
                "typed_extension_protocol_options": _http1_upstream(),
            }
        )
    return clusters


def _peer_listeners(settings: RouterSettings, audiences: Iterable[str]) -> list[dict]:
    """With a peer port: the peer listener, the scoring listener's filters and answers on PEER_ROUTE_CONFIG,
    plain HTTP (only router pods reach it: components/router_manifests.py). Without: none."""
    if not settings.peer_port:
        return []
    listener = _listener(settings, audiences)
    listener["name"] = PEER_LISTENER
    listener["address"]["socket_address"]["port_value"] = settings.peer_port
    chain = listener["filter_chains"][0]
    chain.pop("transport_socket", None)
    hcm = chain["filters"][0]["typed_config"]
    hcm["stat_prefix"] = PEER_STAT_PREFIX
    hcm["rds"] = {"route_config_name": PEER_ROUTE_CONFIG, "config_source": _path_source(settings.config_dir, PEER_ROUTES_FILE)}
    return [listener]


def render_dynamic(routes: Iterable[ServiceRoute], settings: RouterSettings, endpoints: Iterable[EndpointRoute] = ()) -> dict[str, dict]:
    """Every dynamic file: name -> document (deterministic for the same inputs). Routes and endpoints pass
    `refuse_unsafe` and `refuse_unsafe_endpoints` first, so no service's or endpoint's values can make
    Envoy reject a shared file; a version gets its cluster like any service (`_routes` for its route)."""
    endpoints = sorted(endpoints, key=lambda e: (e.name, e.namespace))
    checked = refuse_unsafe(routes, endpoints)
    checked_endpoints = refuse_unsafe_endpoints(endpoints, checked)
    audiences = _service_audiences([*checked, *checked_endpoints])
    tables = _routes(checked, checked_endpoints, settings)
    files = {
        CLUSTERS_FILE: dynamic_file(_clusters(checked, settings) + _peer_clusters(checked, settings)),
        ROUTES_FILE: dynamic_file(_with_forwarding(tables, checked, settings)),
    }
    if settings.peer_port:
        files[PEER_ROUTES_FILE] = dynamic_file(_peer_route_tables(tables))
    files[LISTENERS_FILE] = dynamic_file([_listener(settings, audiences), *_peer_listeners(settings, audiences)])
    if settings.tls:
        files[TLS_SECRET_FILE] = dynamic_file(_sds(settings))
    return files
