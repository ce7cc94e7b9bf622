"""v1's X-Ms-Request-Id on the request the entry script sees (the real server: tests/e2e/test_v1_examples.py)."""

from __future__ import annotations

import flask
import pytest

from aksinf_runtime import request_ids


@pytest.fixture
def client():
    """A Flask app shaped like the inference server's: blueprint "main" sets g.request_id before run()."""
    blueprint = flask.Blueprint("main", __name__)

    @blueprint.before_request
    def _init_headers():
        flask.g.request_id = flask.request.headers.get("x-request-id", "generated-id")

    @blueprint.route("/score", methods=["POST"])
    def score():
        return {"seen": flask.request.headers.get("X-Ms-Request-Id"), "as_dict": dict(flask.request.headers).get("X-Ms-Request-Id")}

    app = flask.Flask(__name__)
    app.register_blueprint(blueprint)
    request_ids.install_on(app)
    request_ids.install_on(app)  # idempotent
    assert app.before_request_funcs["main"].count(request_ids.adopt) == 1
    return app.test_client()


def test_the_routers_request_id_becomes_x_ms_request_id(client):
    seen = client.post("/score", headers={"x-request-id": "router-id-1"}).json
    assert seen == {"seen": "router-id-1", "as_dict": "router-id-1"}  # request.headers and dict(request.headers)


def test_a_client_sent_x_ms_request_id_is_kept(client):
    seen = client.post("/score", headers={"x-request-id": "router-id-2", "X-Ms-Request-Id": "client-id"}).json
    assert seen["seen"] == "client-id"


def test_without_x_request_id_the_servers_own_id_is_used(client):
    assert client.post("/score").json["seen"] == "generated-id"
