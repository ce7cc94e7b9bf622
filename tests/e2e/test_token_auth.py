"""Token auth with the real Envoy on 127.0.0.1: tokens checked against the router's issuer and audience, the
JWKS fetched only from a host whose certificate validates, and each token service's own roles, clients and
audience (`tokenAuthorization`) enforced by Envoy, from deploymentconfig.json through discovery to the route."""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from contract.service import load_service
from contract.v1_files import parse_deployment
from local.net import LOOPBACK, free_port
from local.platform import LocalPlatform
from router.autoscaler import AutoscaleSettings
from router.discovery import (
    MODEL_SERVICE_LABEL,
    SERVICE_NAME_LABEL,
    annotations_for,
    discover,
)
from router.spec import JwtSettings, ServiceRoute, TokenAuthorization
from serving.translate import token_authorization
from tests.certs import certificate_authority, self_signed
from tests.e2e.test_envoy import AUDIENCE, ISSUER, score
from tests.fixtures_router import PRIMARY, with_endpoints
from tests.fixtures_services import ENTRY

SCORER, ADMIN = "Model.Score", "Model.Admin"
CLIENT, OTHER_CLIENT = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
OWN_AUDIENCE = "api://fraud-model"


@pytest.fixture
def signing(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(pyjwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}))

    def token(signer=key, **claims):
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user", "iat": now, "exp": now + 600, **claims}
        return pyjwt.encode({k: v for k, v in body.items() if v is not None}, signer, algorithm="RS256", headers={"kid": "k1"})

    return {"jwks": str(jwks), "token": token, "other": other}


def test_token_auth(envoy_router, fake_model, signing):
    model = fake_model()
    router = envoy_router(
        [with_endpoints(ServiceRoute("tok", auth="token"), model), with_endpoints(ServiceRoute("keyed", keys=(PRIMARY,)), model)],
        jwt=JwtSettings(ISSUER, (AUDIENCE,), local_jwks_path=signing["jwks"]),
    )
    token = signing["token"]
    assert score(router, "tok", token()).status_code == 200
    assert "authorization" not in {k.lower() for k in model.requests[-1]["headers"]}  # token not forwarded
    assert score(router, "tok").status_code == 401
    assert score(router, "tok", token(exp=int(time.time()) - 3600)).status_code == 401
    assert score(router, "tok", token(aud="api://another")).status_code == 401
    assert score(router, "tok", token(iss="https://evil.example/v2.0")).status_code == 401
    assert score(router, "tok", token(signer=signing["other"])).status_code == 401
    assert score(router, "tok", PRIMARY).status_code == 401  # a key is not a token
    assert score(router, "keyed", token()).status_code == 401  # a token is not a key
    assert score(router, "keyed", PRIMARY).status_code == 200


def test_token_services_fail_closed_without_token_validation(envoy_router, fake_model, signing):
    """A token service on a router without issuer/audience answers 401 instead of becoming open; turning token
    validation on later writes the listener (jwt_authn) before the routes that need it, and off again after."""
    model = fake_model()
    router = envoy_router([with_endpoints(ServiceRoute("tok", auth="token"), model)])
    refused = score(router, "tok", signing["token"]())
    assert refused.status_code == 401 and "not configured" in refused.json()["error"] and model.requests == []
    router.settings = replace(router.settings, jwt=JwtSettings(ISSUER, (AUDIENCE,), local_jwks_path=signing["jwks"]))
    assert router.update(router.routes) == ["lds.json", "rds.pb"]
    assert score(router, "tok", signing["token"]()).status_code == 200
    router.settings = replace(router.settings, jwt=None)
    assert router.update(router.routes) == ["rds.pb", "lds.json"]
    assert score(router, "tok", signing["token"]()).status_code == 401


# --------------------------------------------------------------------------- per-service authorization


def test_each_token_service_enforces_its_own_roles_clients_and_audience(envoy_router, fake_model, signing):
    model = fake_model()
    routes = [
        ServiceRoute("roles", auth="token", token_authorization=TokenAuthorization(required_roles=(SCORER, ADMIN))),
        ServiceRoute("clients", auth="token", token_authorization=TokenAuthorization(allowed_client_ids=(CLIENT,))),
        ServiceRoute("audience", auth="token", token_authorization=TokenAuthorization(audience=OWN_AUDIENCE)),
        ServiceRoute("plain", auth="token"),
    ]
    router = envoy_router([with_endpoints(r, model) for r in routes], jwt=JwtSettings(ISSUER, (AUDIENCE,), local_jwks_path=signing["jwks"]))
    token = signing["token"]

    def status(service: str, **claims) -> int:
        return score(router, service, token(**claims)).status_code

    # roles: every required role, in the `roles` list
    assert status("roles", roles=[SCORER, ADMIN, "Other"]) == 200
    denied = score(router, "roles", token(roles=[SCORER]))
    assert denied.status_code == 403 and denied.json()["status"] == 403
    assert status("roles") == 403
    assert status("roles", roles=f"{SCORER} {ADMIN}") == 403  # a string is not the list of roles
    # clients: azp (v2 tokens) or appid (v1 tokens), in any case
    assert status("clients", azp=CLIENT) == 200
    assert status("clients", appid=CLIENT, ver="1.0") == 200
    assert status("clients", azp=CLIENT.upper()) == 200
    assert status("clients", azp=OTHER_CLIENT) == 403
    assert status("clients") == 403
    # audience: the service's own replaces the router's
    assert status("audience", aud=OWN_AUDIENCE) == 200
    assert status("audience") == 401
    assert status("plain") == 200 and status("plain", aud=OWN_AUDIENCE) == 401
    # the rules come after a valid token: a token that is not valid is 401 whatever its claims
    assert status("roles", roles=[SCORER, ADMIN], exp=int(time.time()) - 3600) == 401
    assert len(model.requests) == 6  # the six 200s above, nothing else reached the model


def test_token_authorization_reaches_envoy_from_deploymentconfig_through_discovery(envoy_router, fake_model, signing):
    """The cluster's path: deploymentconfig.json -> the Service's annotations -> discovery -> Envoy. A service
    whose annotation is malformed is refused alone; the others keep serving."""
    deployment, issues = parse_deployment(
        {
            "computeType": "AKS",
            "tokenAuthEnabled": True,
            "tokenAuthorization": {"requiredRoles": [SCORER], "allowedClientIds": [CLIENT], "audience": OWN_AUDIENCE},
        }
    )
    assert issues == []
    model = fake_model()
    good = ServiceRoute("fraud", auth="token", token_authorization=token_authorization(deployment))
    annotations = annotations_for(good, deployment="model-fraud", autoscale=AutoscaleSettings(), keys_secret=None)
    broken = {**annotations_for(ServiceRoute("broken", auth="token"), deployment="model-broken", autoscale=AutoscaleSettings(), keys_secret=None)}
    broken["aks-inference/token-authorization"] = '{"requiredRoles": "Model.Score"}'
    services, slices = [], []
    for name, notes in (("model-fraud", annotations), ("model-broken", broken)):
        services.append({"metadata": {"name": name, "namespace": "models", "labels": {MODEL_SERVICE_LABEL: "true"}, "annotations": notes}})
        slices.append(
            {
                "metadata": {"name": name, "namespace": "models", "labels": {SERVICE_NAME_LABEL: name}},
                "ports": [{"name": "http", "port": model.port}],
                "endpoints": [{"addresses": [LOOPBACK], "conditions": {"ready": True}}],
            }
        )
    found = {d.route.name: d.route for d in discover(services, slices, [])}
    assert found["fraud"].token_authorization == good.token_authorization and not found["fraud"].problems
    router = envoy_router(list(found.values()), jwt=JwtSettings(ISSUER, (AUDIENCE,), local_jwks_path=signing["jwks"]))
    token = signing["token"]
    assert score(router, "fraud", token(aud=OWN_AUDIENCE, roles=[SCORER], azp=CLIENT)).status_code == 200
    assert score(router, "fraud", token(aud=OWN_AUDIENCE, roles=[SCORER], azp=OTHER_CLIENT)).status_code == 403
    assert score(router, "fraud", token(aud=OWN_AUDIENCE, azp=CLIENT)).status_code == 403
    assert score(router, "fraud", token(roles=[SCORER], azp=CLIENT)).status_code == 401
    refused = score(router, "broken", token())
    assert refused.status_code == 503 and "aks-inference/token-authorization" in refused.json()["error"]


# --------------------------------------------------------------------------- JWKS over validated TLS


class JwksServer:
    """A JWKS host on 127.0.0.1 over HTTPS with the given certificate; counts the JWKS it served."""

    def __init__(self, jwks_path: str, cert, key):
        body = Path(jwks_path).read_bytes()
        served = self.served = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                served.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.uri = f"https://{LOOPBACK}:{self.server.server_address[1]}/tenant/discovery/v2.0/keys"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks_server(signing):
    started: list[JwksServer] = []

    def start(cert, key) -> JwksServer:
        started.append(JwksServer(signing["jwks"], cert, key))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def _wait_for_stat(router, name: str, attempts: int = 100) -> int:
    """The value of one Envoy counter once it is above 0 (polled at most `attempts` times, 0.1 s apart)."""
    for _ in range(attempts):
        value = router.envoy.stats(f"^{name}$").get(name, 0)
        if value:
            return value
        time.sleep(0.1)
    return 0


def _remote_router(envoy_router, fake_model, server: JwksServer, **bundle):
    model = fake_model()
    jwt = JwtSettings(ISSUER, (AUDIENCE,), jwks_uri=server.uri, **bundle)
    return envoy_router([with_endpoints(ServiceRoute("tok", auth="token"), model)], jwt=jwt), model


def test_a_self_signed_jwks_host_is_not_trusted(envoy_router, fake_model, jwks_server, signing, tmp_path):
    """The default trust is the system CA bundle: a self-signed JWKS host, even one whose certificate names
    127.0.0.1, serves no keys, so a token signed with its key gets 401."""
    server = jwks_server(*self_signed(tmp_path)[:2])
    router, model = _remote_router(envoy_router, fake_model, server)
    assert _wait_for_stat(router, "cluster.jwks.ssl.fail_verify_error") > 0
    assert score(router, "tok", signing["token"]()).status_code == 401
    assert server.served == [] and model.requests == []


def test_a_jwks_host_signed_by_the_given_bundle_is_trusted(envoy_router, fake_model, jwks_server, signing, tmp_path):
    ca, sign = certificate_authority(tmp_path)
    server = jwks_server(*sign(LOOPBACK, "jwks"))
    router, model = _remote_router(envoy_router, fake_model, server, jwks_ca_bundle=str(ca))
    assert _wait_for_stat(router, "http.router.jwt_authn.jwks_fetch_success") > 0
    assert score(router, "tok", signing["token"]()).status_code == 200
    assert score(router, "tok", signing["token"](signer=signing["other"])).status_code == 401
    assert server.served and len(model.requests) == 1


@pytest.mark.parametrize("san", ["127.0.0.2", "jwks.example"])
def test_a_jwks_certificate_for_another_host_is_not_trusted(envoy_router, fake_model, jwks_server, signing, tmp_path, san):
    """Signed by the trusted CA, but for another address or a name: the SAN must match the JWKS host."""
    ca, sign = certificate_authority(tmp_path)
    server = jwks_server(*sign(san, "jwks"))
    router, model = _remote_router(envoy_router, fake_model, server, jwks_ca_bundle=str(ca))
    assert _wait_for_stat(router, "cluster.jwks.ssl.fail_verify_san") > 0
    assert score(router, "tok", signing["token"]()).status_code == 401
    assert server.served == [] and model.requests == []


# --------------------------------------------------------------------------- local mode


def test_local_mode_serves_a_token_service_with_its_authorization(tmp_path, signing):
    """`aksinf serve`'s platform: deploymentconfig.json's tokenAuthorization reaches the local router through
    the same translation as the cluster's, in front of a real azureml-inference-server-http replica."""
    folder = tmp_path / "fraud"
    (folder / "model").mkdir(parents=True)
    (folder / "score.py").write_text(ENTRY)
    (folder / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    (folder / "deploymentconfig.json").write_text(
        json.dumps(
            {
                "computeType": "AKS",
                "tokenAuthEnabled": True,
                "tokenAuthorization": {"requiredRoles": [SCORER], "allowedClientIds": [CLIENT], "audience": OWN_AUDIENCE},
                "autoScaler": {"autoscaleEnabled": False},
                "numReplicas": 1,
            }
        )
    )
    jwt = JwtSettings(ISSUER, (AUDIENCE,), local_jwks_path=signing["jwks"])
    with LocalPlatform([load_service(folder, "fraud")], tmp_path / "run", listen_port=free_port(), jwt=jwt) as platform:
        url = f"{platform.url}/api/v1/service/fraud/score"
        token = signing["token"]

        def status(**claims) -> int:
            return httpx.post(url, json={"data": 1}, headers={"Authorization": f"Bearer {token(**claims)}"}, timeout=30).status_code

        assert status(aud=OWN_AUDIENCE, roles=[SCORER], azp=CLIENT) == 200
        assert status(aud=OWN_AUDIENCE, roles=[SCORER], azp=OTHER_CLIENT) == 403
        assert status(aud=OWN_AUDIENCE, azp=CLIENT) == 403
        assert status(roles=[SCORER], azp=CLIENT) == 401  # the router's audience is not this service's
