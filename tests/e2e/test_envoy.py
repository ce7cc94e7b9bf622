"""The Envoy data plane with azureml-fe semantics, driven for real on 127.0.0.1: routing, auth, limits, request ids,\nservices refused instead of rejected, and readiness that follows what Envoy accepted."""

from __future__ import annotations

import base64
import copy
import http.client
import json
import re
import shutil
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from local.net import free_port
from router.autoscaler import AutoscaleSettings
from router.discovery import (
    AUTH,
    AUTOSCALE,
    KEYS_SECRET,
    MAX_CONCURRENT,
    MODEL_SERVICE_LABEL,
    SCORING_TIMEOUT_MS,
    SERVICE_NAME_LABEL,
    annotations_for,
    discover,
)
from router.envoy_config import render_dynamic
from router.envoy_files import InvalidConfig, read_dynamic_file, validate_config
from router.spec import Endpoint, JwtSettings, ServiceRoute, TlsSettings
from tests.certs import self_signed
from tests.fixtures_router import (
    PRIMARY,
    SECONDARY,
    render_settings,
    sample_routes,
    with_endpoints,
)

OTHER_KEY = "o" * 32


ISSUER, AUDIENCE = "https://login.example/tenant/v2.0", "api://scoring"


def score(router, name, key=None, body=b'{"data": [1]}', timeout=10.0):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{router.url}/api/v1/service/{name}/score", content=body, headers=headers, timeout=timeout)


def _jwks_file(directory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "jwks.json"
    path.write_text(json.dumps({"keys": [json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))]}))
    return str(path)


@pytest.mark.parametrize("variant", ["keys-only", "remote-jwks", "local-jwks", "tls", "small-cap"])
def test_every_rendered_config_passes_envoy_validate(tmp_path, variant):
    extra = {
        "keys-only": lambda: {},
        "remote-jwks": lambda: {"jwt": JwtSettings(ISSUER, (AUDIENCE,), jwks_uri="https://login.microsoftonline.com/t/discovery/v2.0/keys")},
        "local-jwks": lambda: {"jwt": JwtSettings(ISSUER, (AUDIENCE,), local_jwks_path=_jwks_file(tmp_path))},
        "tls": lambda: {"tls": TlsSettings(*map(str, self_signed(tmp_path)[:2]))},
        "small-cap": lambda: {"max_request_bytes": 1024},
    }[variant]()
    settings = render_settings(tmp_path, **extra)
    files = render_dynamic(sample_routes(), settings)
    validate_config(files, settings)
    assert files == render_dynamic(list(reversed(sample_routes())), settings)  # order-independent, deterministic


def test_validation_catches_a_broken_config(tmp_path):
    settings = render_settings(tmp_path)
    files = copy.deepcopy(render_dynamic(sample_routes(), settings))
    files["cds.pb"]["resources"][0]["lb_policy"] = "FASTEST"
    with pytest.raises(InvalidConfig, match="FASTEST"):
        validate_config(files, settings)


def test_key_auth(envoy_router, fake_model):
    model, other = fake_model(), fake_model()
    router = envoy_router(
        [
            with_endpoints(ServiceRoute("alpha", keys=(PRIMARY, SECONDARY)), model),
            with_endpoints(ServiceRoute("beta", keys=(OTHER_KEY,)), other),
            with_endpoints(ServiceRoute("keyless", keys=()), other),  # keys not provisioned yet
        ]
    )
    assert score(router, "keyless", OTHER_KEY).status_code == 401  # fails closed, never open
    assert score(router, "alpha").status_code == 401
    wrong = score(router, "alpha", "x" * 32)
    assert wrong.status_code == 401 and wrong.json()["status"] == 401
    assert score(router, "alpha", OTHER_KEY).status_code == 401  # another service's key opens only that service
    assert score(router, "alpha", PRIMARY).status_code == 200
    assert score(router, "alpha", SECONDARY).status_code == 200
    assert score(router, "beta", OTHER_KEY).status_code == 200
    assert len(model.requests) == 2
    for seen in model.requests:
        headers = {k.lower(): v for k, v in seen["headers"].items()}
        assert "authorization" not in headers  # credentials hidden from the model
        assert seen["path"] == "/score"
    clients = sorted({k.lower(): v for k, v in r["headers"].items()}["x-aksinf-client"] for r in model.requests)
    assert clients == ["alpha-primary", "alpha-secondary"]


def test_health_swagger_and_unknown_service(envoy_router, fake_model):
    model = fake_model()
    router = envoy_router([with_endpoints(ServiceRoute("alpha", keys=(PRIMARY,)), model)])
    health = httpx.get(f"{router.url}/")
    assert (health.status_code, health.text) == (200, "Healthy")
    swagger = httpx.get(f"{router.url}/api/v1/service/alpha/swagger.json", headers={"Authorization": f"Bearer {PRIMARY}"})
    assert swagger.status_code == 200 and model.requests[-1]["path"] == "/swagger.json"
    unknown = score(router, "nope", PRIMARY)
    assert unknown.status_code == 404
    assert "Unknown service" in unknown.json()["error"] and unknown.headers["x-request-id"] == unknown.json()["requestId"]


def test_payload_over_the_cap_is_refused_with_bounded_memory(envoy_router, fake_model):
    model = fake_model()
    router = envoy_router([with_endpoints(ServiceRoute("alpha", auth="none"), model)])
    baseline = router.envoy.rss_bytes()
    chunk = b"x" * (1024 * 1024)
    # A declared oversize body is refused from its headers alone: nothing of the 101 MB needs sending.
    with socket.create_connection(("127.0.0.1", router.settings.listen_port), timeout=10) as raw:
        raw.sendall(b"POST /api/v1/service/alpha/score HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (101 * 2**20))
        declared = b""
        while b"Payload too large" not in declared and (data := raw.recv(65536)):  # Envoy answers, then closes
            declared += data
    assert declared.startswith(b"HTTP/1.1 413") and b"Payload too large" in declared

    peak = [baseline]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], router.envoy.rss_bytes())
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        def stream():  # chunked: no Content-Length, so the limit is enforced while streaming
            for _ in range(101):
                yield chunk

        try:
            streamed = httpx.post(f"{router.url}/api/v1/service/alpha/score", content=stream(), timeout=60)
            assert streamed.status_code == 413
        except httpx.HTTPError:
            pass  # Envoy may answer 413 and close before the client finished sending; the cap held either way
    finally:
        stop.set()
        sampler.join()
    # The body is buffered whole before a replica is chosen (a slow uploader holds none): Envoy holds at most the cap.
    assert peak[0] - baseline < router.settings.max_request_bytes + 40 * 1024 * 1024
    assert all(r["bytes"] < 100 * 1024 * 1024 for r in model.requests)  # no over-cap request ever completes at the model
    # 5 MB passes whole: past Envoy's 1 MiB retry buffer, the request streams on without retries.
    assert score(router, "alpha", body=chunk * 5).status_code == 200 and model.requests[-1]["bytes"] == 5 * len(chunk)


def test_scoring_timeout_is_504(envoy_router, fake_model):
    slow = fake_model(delay=1.5)
    router = envoy_router([with_endpoints(ServiceRoute("slow", auth="none", scoring_timeout_ms=300), slow)])
    started = time.monotonic()
    response = score(router, "slow")
    assert response.status_code == 504 and "Scoring timeout" in response.json()["error"]
    assert time.monotonic() - started < 1.4


def test_model_errors_pass_through_and_a_dropped_connection_is_502(envoy_router, fake_model):
    """A model's own 500 (run() raised) reaches the caller unchanged, body included; a replica that
    closes the connection without replying gets azureml-fe's 502, and the request is not retried."""
    failing, crashing = fake_model(status=500), fake_model(drop=True)
    router = envoy_router(
        [with_endpoints(ServiceRoute("failing", auth="none"), failing), with_endpoints(ServiceRoute("crashing", auth="none"), crashing)]
    )
    failed = score(router, "failing")
    assert failed.status_code == 500 and failed.json() == {"path": "/score", "port": failing.port}
    dropped = score(router, "crashing")
    assert dropped.status_code == 502 and dropped.json()["error"] == "Replica closed connection before replying"
    assert len(crashing.requests) == 1  # the request may have run: never replayed


def test_a_refused_connection_is_retried_on_another_replica(envoy_router, fake_model):
    """A replica that refuses connections (its process is gone) costs no request: the request never reached a
    model, so it is safe to send it to another replica."""
    live = fake_model()
    gone = Endpoint("127.0.0.1", free_port())  # nothing listens there
    router = envoy_router([ServiceRoute("alpha", auth="none", endpoints=(gone, live.endpoint))])
    assert [score(router, "alpha").status_code for _ in range(20)] == [200] * 20
    assert len(live.requests) == 20
    retried = router.envoy.stats(r"^cluster\.model-models-alpha\.upstream_rq_retry$")
    # Envoy breaks least-request ties at random: about half the picks hit the dead replica, then retry elsewhere.
    assert retried["cluster.model-models-alpha.upstream_rq_retry"] >= 1


def test_no_ready_replica_is_503(envoy_router):
    router = envoy_router([ServiceRoute("empty", auth="none")])
    response = score(router, "empty")
    assert response.status_code == 503 and "No ready replicas" in response.json()["error"]


def test_queue_wait_beyond_the_limit_is_503_and_concurrency_is_capped(envoy_router, fake_model):
    """1 replica, 1 request at a time, 1 s per request, maxQueueWaitMs 500: the queue admits the minimum
    of one waiting request; a third concurrent request would wait ~2 s, so it gets 503 at once."""
    model = fake_model(delay=1.0)
    route = with_endpoints(ServiceRoute("busy", auth="none", max_queue_wait_ms=500, latency_ms=1000), model)
    assert route.queue_capacity() == 1
    router = envoy_router([route])
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(score, router, "busy")
        time.sleep(0.2)
        second = pool.submit(score, router, "busy")
        time.sleep(0.2)
        started = time.monotonic()
        rejected = pool.submit(score, router, "busy").result()
        waited = time.monotonic() - started
        assert first.result().status_code == 200 and second.result().status_code == 200
    assert rejected.status_code == 503 and "overloaded" in rejected.json()["error"]
    assert waited < 1.0  # one that queued would wait until the second is done: 1.6 s from here
    assert model.peak_active == 1  # maxConcurrentRequestsPerContainer enforced at the replica

    # A fast model under the same limit may queue more: 5 requests wait about 0.5 s at most.
    quick = fake_model(delay=0.1)
    fast_route = with_endpoints(ServiceRoute("busy", auth="none", max_queue_wait_ms=500, latency_ms=100), quick)
    assert fast_route.queue_capacity() == 5
    router.update([fast_route])
    with ThreadPoolExecutor(4) as pool:
        statuses = [f.result().status_code for f in [pool.submit(score, router, "busy") for _ in range(4)]]
    assert statuses == [200] * 4 and quick.peak_active == 1


def test_services_come_and_go_without_restart(envoy_router, fake_model):
    a, b = fake_model(), fake_model()
    router = envoy_router([with_endpoints(ServiceRoute("alpha", auth="none"), a)])
    pid = router.envoy.process.pid
    assert score(router, "beta").status_code == 404
    changed = router.update(router.routes + [with_endpoints(ServiceRoute("beta", auth="none"), b)])
    assert changed.index("cds.pb") < changed.index("rds.pb")  # clusters before the routes that use them
    assert score(router, "beta").status_code == 200
    changed = router.update([with_endpoints(ServiceRoute("beta", auth="none"), b)])
    assert changed.index("rds.pb") < changed.index("cds.pb")  # routes leave before their clusters
    assert score(router, "alpha").status_code == 404 and score(router, "beta").status_code == 200
    assert router.update(router.routes) == []  # unchanged: nothing written
    gamma = with_endpoints(ServiceRoute("gamma", auth="none"), a)
    changed = router.update([gamma])  # beta replaced by gamma in one update
    assert changed == ["cds.pb", "rds.pb", "cds.pb"]  # interim CDS holds both, so no route dangles
    assert score(router, "gamma").status_code == 200 and score(router, "beta").status_code == 404
    final = read_dynamic_file(router.settings.config_dir / "cds.pb")
    assert [c["name"] for c in final["resources"]] == ["model-models-gamma"]
    assert router.envoy.process.pid == pid and router.envoy.process.poll() is None
    rejected = router.envoy.stats(r"update_rejected$")
    assert rejected and not any(rejected.values()), rejected  # Envoy accepted every file it reloaded
    assert router.envoy.stats(r"^cluster_manager\.cds\.update_success$")["cluster_manager.cds.update_success"] >= 3


def test_access_log_is_json_with_request_id_and_replica(envoy_router, fake_model):
    model = fake_model()
    router = envoy_router([with_endpoints(ServiceRoute("alpha", keys=(PRIMARY,)), model)])
    ok = score(router, "alpha", PRIMARY)
    denied = score(router, "alpha", body=b"")
    wanted = {ok.headers["x-request-id"], denied.headers["x-request-id"]}
    deadline = time.monotonic() + 5  # Envoy flushes the file access log about once a second
    while not wanted <= {e["request_id"] for e in router.access_log()} and time.monotonic() < deadline:
        time.sleep(0.2)
    entries = {e["request_id"]: e for e in router.access_log()}
    entry = entries[ok.headers["x-request-id"]]
    assert (entry["service"], entry["status"], entry["replica"]) == ("alpha", 200, f"127.0.0.1:{model.port}")
    assert entry["client"] == "alpha-primary" and isinstance(entry["duration_ms"], int)
    rejected = entries[denied.headers["x-request-id"]]
    assert (rejected["status"], rejected["details"], rejected["replica"]) == (401, "missing_api_key", None)


def test_tls_terminates_and_the_certificate_rotates_without_restart(envoy_router, fake_model, tmp_path):
    model = fake_model()
    cert, key, first_serial = self_signed(tmp_path, "first")
    router = envoy_router([with_endpoints(ServiceRoute("alpha", auth="none"), model)], tls=TlsSettings(str(cert), str(key)))
    pid = router.envoy.process.pid

    def served_serial(maximum_version=ssl.TLSVersion.MAXIMUM_SUPPORTED):
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        context.maximum_version = maximum_version
        with socket.create_connection(("127.0.0.1", router.settings.listen_port), timeout=5) as raw:
            with context.wrap_socket(raw) as tls:
                return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number, tls.version()

    response = httpx.post(f"{router.url}/api/v1/service/alpha/score", content=b"{}", verify=False)
    assert response.status_code == 200
    assert served_serial()[0] == first_serial
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"http://127.0.0.1:{router.settings.listen_port}/api/v1/service/alpha/score", content=b"{}", timeout=3)
    new_cert, new_key, second_serial = self_signed(tmp_path, "second")
    router.settings = replace(router.settings, tls=TlsSettings(str(new_cert), str(new_key)))
    router.update(router.routes, settle=1.0)
    assert served_serial()[0] == second_serial
    assert served_serial(ssl.TLSVersion.TLSv1_2) == (second_serial, "TLSv1.2")  # azureml-fe's only version still served
    assert router.envoy.process.pid == pid


def test_certificate_files_replaced_in_place_rotate_without_restart(envoy_router, fake_model, tmp_path):
    """How a mounted Kubernetes Secret changes: same file names, new content, no config rewrite."""
    import shutil
    import socket
    import ssl

    from cryptography import x509

    tls_dir = tmp_path / "mounted"
    tls_dir.mkdir()
    cert, key, first = self_signed(tmp_path, "first")
    shutil.copy(cert, tls_dir / "tls.crt")
    shutil.copy(key, tls_dir / "tls.key")
    router = envoy_router([with_endpoints(ServiceRoute("alpha", auth="none"), fake_model())],
                          tls=TlsSettings(str(tls_dir / "tls.crt"), str(tls_dir / "tls.key")))

    def serial():
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", router.settings.listen_port), timeout=5) as raw, context.wrap_socket(raw) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number

    assert serial() == first
    new_cert, new_key, second = self_signed(tmp_path, "second")
    staging = tmp_path / "staging"
    staging.mkdir()
    shutil.copy(new_cert, staging / "tls.crt")
    shutil.copy(new_key, staging / "tls.key")
    for name in ("tls.key", "tls.crt"):  # atomic renames into the watched directory, as the kubelet does
        (staging / name).rename(tls_dir / name)
    deadline = time.monotonic() + 5
    while serial() != second and time.monotonic() < deadline:
        time.sleep(0.2)
    assert serial() == second


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CLIENT_UUID = "3f1c2a9e-1111-4222-8333-444455556666"


def _post_with_request_id(router, request_id: bytes) -> tuple[int, str | None]:
    """http.client sends what httpx would refuse (tabs, control characters, raw bytes)."""
    connection = http.client.HTTPConnection("127.0.0.1", router.settings.listen_port, timeout=10)
    try:
        connection.putrequest("POST", "/api/v1/service/alpha/score")
        connection.putheader("x-request-id", request_id)
        connection.putheader("Content-Length", "2")
        connection.endheaders(b"{}")
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("x-request-id")
    finally:
        connection.close()


def _wait_for_log(router, request_ids: set[str]) -> list[dict]:
    deadline = time.monotonic() + 5  # Envoy flushes the file access log every 500 ms
    while not request_ids <= {e["request_id"] for e in router.access_log()} and time.monotonic() < deadline:
        time.sleep(0.2)
    return router.access_log()


def test_a_client_request_id_is_kept_only_when_it_is_a_uuid(envoy_router, fake_model):
    """v1 clients correlate with the UUID they send: it is kept byte for byte. Anything else is replaced by a
    fresh UUID before Envoy's filters, its access log and the model see it; control characters never pass the codec,
    and a request Envoy refuses before its filters logs at most 36 characters of it."""
    model = fake_model()
    router = envoy_router([with_endpoints(ServiceRoute("alpha", auth="none"), model)])
    sent = {
        "uuid": CLIENT_UUID.encode(),
        "upper-case uuid": CLIENT_UUID.upper().encode(),
        "not a uuid": b"order-42",
        "too long": CLIENT_UUID.encode() + b"0" * 4000,
        "tab inside": CLIENT_UUID.encode() + b"\tforged=1",
        "two ids": f"{CLIENT_UUID},{CLIENT_UUID}".encode(),
        "not ascii": "über-id".encode(),
        "log injection": b'x", "status": 200, "forged": "1',
    }
    answered = {}
    for case, value in sent.items():
        status, request_id = _post_with_request_id(router, value)
        upstream = {k.lower(): v for k, v in model.requests[-1]["headers"].items()}["x-request-id"]
        assert status == 200 and upstream == request_id, case  # the model sees what the caller gets back
        answered[case] = request_id
    assert answered["uuid"] == CLIENT_UUID and answered["upper-case uuid"] == CLIENT_UUID.upper()
    replaced = [answered[case] for case in sent if "uuid" not in case]
    assert all(UUID.fullmatch(request_id) for request_id in replaced) and len(set(replaced)) == len(replaced)

    model_requests = len(model.requests)
    status, _ = _post_with_request_id(router, CLIENT_UUID.encode() + b"\x01")
    assert status == 400 and len(model.requests) == model_requests  # refused by Envoy's codec, before any filter
    # Refused by Envoy before its filters run (no Host header): the id as sent, but never more than 36 characters logged.
    with socket.create_connection(("127.0.0.1", router.settings.listen_port), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nx-request-id: no-host-" + b"x" * 4000 + b"\r\n\r\n")
        assert raw.recv(65536).startswith(b"HTTP/1.1 400")

    logged = {e["request_id"] for e in _wait_for_log(router, {*answered.values(), "no-host-" + "x" * 28})}
    assert set(answered.values()) <= logged and "no-host-" + "x" * 28 in logged
    assert not any(isinstance(e, str) and ("order-42" in e or "forged" in e or "über" in e or len(e) > 36) for e in logged)


def _model_service(name: str, namespace: str, annotations: dict[str, str], address: str, port: int, address_type: str = "IPv4") -> tuple[dict, dict]:
    """A labelled model Service with `annotations` over the defaults, and its EndpointSlice (one ready replica)."""
    defaults = annotations_for(ServiceRoute(name, namespace, auth="none"), deployment=name, autoscale=AutoscaleSettings(), keys_secret=None)
    service = {"metadata": {"name": f"{name}-svc", "namespace": namespace, "labels": {MODEL_SERVICE_LABEL: "true"}, "annotations": {**defaults, **annotations}}}
    endpoint_slice = {
        "metadata": {"name": f"{name}-svc-x", "namespace": namespace, "labels": {SERVICE_NAME_LABEL: f"{name}-svc"}},
        "addressType": address_type,
        "ports": [{"name": "http", "port": port}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
    }
    return service, endpoint_slice


def test_services_envoy_would_reject_are_refused_and_the_others_keep_serving(envoy_router, fake_model):
    """Each of these made Envoy reject a shared file (and with it every service's update) or crashed discovery;
    now each answers a JSON 503 naming its problem, Envoy rejects nothing, and alpha serves."""
    model = fake_model()
    port = model.port
    same_key = base64.b64encode(PRIMARY.encode()).decode()
    objects = [
        _model_service("alpha", "models", {}, "127.0.0.1", port),
        _model_service("huge", "models", {MAX_CONCURRENT: str(2**32)}, "127.0.0.1", port),  # over Envoy's uint32
        _model_service("forever", "models", {SCORING_TIMEOUT_MS: "10000000000000"}, "127.0.0.1", port),  # not a duration
        _model_service("garbled", "models", {AUTOSCALE: "{"}, "127.0.0.1", port),  # crashed discover()
        _model_service("named", "models", {}, "model.example", port, address_type="FQDN"),  # a STATIC cluster needs an IP
        _model_service("twins", "models", {AUTH: "key", KEYS_SECRET: "twins-keys"}, "127.0.0.1", port),  # duplicate keys
        _model_service("cde", "a-b", {}, "127.0.0.1", port),  # model-a-b-cde ...
        _model_service("b-cde", "a", {}, "127.0.0.1", port),  # ... twice
    ]
    secret = {"metadata": {"name": "twins-keys", "namespace": "models"}, "data": {"primaryKey": same_key, "secondaryKey": same_key}}
    found = discover([s for s, _ in objects], [e for _, e in objects], [secret])
    routes = [d.route for d in found]
    router = envoy_router(routes)
    validate_config(render_dynamic(routes, router.settings), router.settings)
    assert score(router, "alpha").status_code == 200 and len(model.requests) == 1
    expected = {
        "huge": "aks-inference/max-concurrent=4294967296 must be a whole number from 1 to 2147483647",
        "forever": "aks-inference/scoring-timeout-ms=10000000000000 must be a whole number from 1 to 2147483647",
        "garbled": "aks-inference/autoscale='{' is not JSON",
        "named": "EndpointSlice port 'http'='model.example:",
        "twins": "aks-inference/keys-secret: the primary and secondary key are the same",
        "cde": "cluster 'model-a-b-cde' would serve a-b/cde and a/b-cde",
        "b-cde": "cluster 'model-a-b-cde' would serve a-b/cde and a/b-cde",
    }
    for name, problem in expected.items():
        refused = score(router, name, PRIMARY)
        assert refused.status_code == 503 and problem in refused.json()["error"], (name, refused.text)
        assert refused.json()["error"].startswith("The router does not serve this service: ")
    assert len(model.requests) == 1  # no refused service reached the model
    rejected = router.envoy.stats(r"update_rejected$")
    assert rejected and not any(rejected.values()), rejected


def test_an_invalid_auth_setting_refuses_every_request(envoy_router, fake_model):
    """`aks-inference/auth: Key` (any value but exactly key, token or none) used to render an open route."""
    model = fake_model()
    service, endpoint_slice = _model_service("alpha", "models", {AUTH: "Key", KEYS_SECRET: "alpha-keys"}, "127.0.0.1", model.port)
    secret = {"metadata": {"name": "alpha-keys", "namespace": "models"}, "stringData": {"primaryKey": PRIMARY}}
    router = envoy_router([d.route for d in discover([service], [endpoint_slice], [secret])])
    for key in (None, PRIMARY, "x" * 32):
        refused = score(router, "alpha", key)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == (
            "This service's auth setting is invalid, so the router refuses every request: "
            "aks-inference/auth='Key' is not one of key, token, none (exactly, lower case)"
        )
    assert model.requests == []


def test_readiness_follows_what_envoy_accepted_and_the_status_server_reaches_no_admin_endpoint(envoy_router, router_status, fake_model, tmp_path):
    """A mounted TLS Secret with a broken certificate: Envoy rejects the new SDS file and keeps the old
    certificate; the replica turns unready, naming the file, until a good one is written."""
    cert, key, _ = self_signed(tmp_path, "good")
    router = envoy_router([with_endpoints(ServiceRoute("alpha", auth="none"), fake_model())], tls=TlsSettings(str(cert), str(key)))
    status = router_status(router)
    base = f"http://127.0.0.1:{status.port}"

    def ready_after_write(wanted: int) -> httpx.Response:
        deadline = time.monotonic() + 5
        while (response := httpx.get(f"{base}/ready")).status_code != wanted and time.monotonic() < deadline:
            time.sleep(0.1)
        return response

    assert ready_after_write(200).json() == {"ready": True}
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tls.crt").write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    shutil.copy(key, broken / "tls.key")
    router.settings = replace(router.settings, tls=TlsSettings(str(broken / "tls.crt"), str(broken / "tls.key")))
    assert router.update(router.routes) == ["sds-tls.json"]
    unready = ready_after_write(503)
    assert unready.status_code == 503 and unready.json()["reasons"][0].startswith("Envoy rejected sds-tls.json (it serves version ")
    assert httpx.post(f"{router.url}/api/v1/service/alpha/score", content=b"{}", verify=False).status_code == 200  # old certificate

    # What peers and probes reach is read-only and never Envoy's admin API.
    assert httpx.post(f"{base}/quitquitquit").status_code == 405
    assert httpx.post(f"{base}/healthcheck/fail").status_code == 405
    assert httpx.get(f"{base}/quitquitquit").status_code == 404 and httpx.get(f"{base}/stats").status_code == 404
    assert router.envoy.process.poll() is None

    router.settings = replace(router.settings, tls=TlsSettings(str(cert), str(key)))
    router.update(router.routes)
    assert ready_after_write(200).status_code == 200
