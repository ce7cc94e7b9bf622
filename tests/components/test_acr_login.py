"""The Entra-token-for-ACR-refresh-token exchange against a loopback fake of `POST /oauth2/exchange`:
the request's shape, the secret never leaving the request, and what a refused identity is told."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from components.acr_login import (
    ACR_USERNAME,
    AcrLoginError,
    exchange_endpoint,
    exchange_for_refresh_token,
)

LOGIN_SERVER = "acraksinfprod.azurecr.io"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ACCESS_TOKEN = "eyJ0eXAiOiJKV1Qi.entra-access-token.signature"
REFRESH_TOKEN = "eyJhbGciOiJSUzI1NiJ9.acr-refresh-token.signature"


class FakeRegistry:
    """A loopback stand-in for the registry's exchange endpoint: records requests, answers as configured."""

    def __init__(self, status: int = 200, body: dict | None = None):
        self.status, self.body, self.requests = status, body if body is not None else {"refresh_token": REFRESH_TOKEN}, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                fake.requests.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                      "form": parse_qs(self.rfile.read(length).decode())})
                payload = json.dumps(fake.body).encode()
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}/oauth2/exchange"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_the_request_is_the_documented_form_and_the_refresh_token_comes_back(caplog, capsys):
    caplog.set_level(logging.DEBUG)
    with FakeRegistry() as registry:
        assert exchange_for_refresh_token(registry.endpoint, LOGIN_SERVER, TENANT, ACCESS_TOKEN) == REFRESH_TOKEN
    [request] = registry.requests
    assert request["path"] == "/oauth2/exchange"
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert request["form"] == {"grant_type": ["access_token"], "service": [LOGIN_SERVER], "tenant": [TENANT],
                               "access_token": [ACCESS_TOKEN]}
    printed = capsys.readouterr()
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN):
        assert secret not in caplog.text and secret not in printed.out + printed.err


@pytest.mark.parametrize("status", [401, 403])
def test_an_identity_without_acrpush_is_told_what_to_grant(status, caplog):
    caplog.set_level(logging.DEBUG)
    body = {"errors": [{"code": "UNAUTHORIZED", "message": f"token {ACCESS_TOKEN}"}]}
    with FakeRegistry(status=status, body=body) as registry, pytest.raises(AcrLoginError) as excinfo:
        exchange_for_refresh_token(registry.endpoint, LOGIN_SERVER, TENANT, ACCESS_TOKEN)
    message = str(excinfo.value)
    assert f"{LOGIN_SERVER} refused the deploying identity's Entra token (HTTP {status})" in message
    assert "needs AcrPush" in message and "az role assignment create --role AcrPush" in message
    assert "az acr show -n acraksinfprod" in message
    assert ACCESS_TOKEN not in message and ACCESS_TOKEN not in caplog.text


@pytest.mark.parametrize(("status", "body", "expected"), [
    (200, {"access_token": "not-a-refresh-token"}, "without a refresh_token"),
    (500, {"errors": []}, "HTTP 500"),
])
def test_other_answers_are_errors_without_secrets(status, body, expected):
    with FakeRegistry(status=status, body=body) as registry, pytest.raises(AcrLoginError, match=expected) as excinfo:
        exchange_for_refresh_token(registry.endpoint, LOGIN_SERVER, TENANT, ACCESS_TOKEN)
    assert ACCESS_TOKEN not in str(excinfo.value) and "not-a-refresh-token" not in str(excinfo.value)


def test_plain_http_is_refused_off_loopback_before_any_request():
    with pytest.raises(AcrLoginError, match="must be https") as excinfo:
        exchange_for_refresh_token("http://acraksinfprod.azurecr.io/oauth2/exchange", LOGIN_SERVER, TENANT, ACCESS_TOKEN)
    assert ACCESS_TOKEN not in str(excinfo.value)


def test_the_real_endpoint_and_user_are_the_documented_ones():
    assert exchange_endpoint(LOGIN_SERVER) == "https://acraksinfprod.azurecr.io/oauth2/exchange"
    assert ACR_USERNAME == "00000000-0000-0000-0000-000000000000"
