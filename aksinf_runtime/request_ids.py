"""v1's `X-Ms-Request-Id` request header, as entry scripts read it.

On AKS, azureml-fe put its request id on every request as `X-Ms-Request-Id`, and v1 entry scripts log
it (MLOpsPython: `request_headers.get("X-Ms-Request-Id")`, or `request.headers` under `@rawhttp`).
Here the router (Envoy) sets `x-request-id` on every request and the inference server adopts it as
its request id (`flask.g.request_id`). `adopt` makes the request the entry script sees carry
`X-Ms-Request-Id` = that id, unless the client sent one.

It runs after the server's own header handling (so the server neither logs its "x-ms-request-id is
deprecated" warning nor changes the ids it echoes), and before `run()`: both `request_headers` (built
from `request.headers` at call time) and the Flask request of `@rawhttp` see the header.
"""

from __future__ import annotations

LEGACY_HEADER = "X-Ms-Request-Id"
LEGACY_ENVIRON_KEY = "HTTP_X_MS_REQUEST_ID"  # how WSGI carries the header
SERVER_BLUEPRINT = "main"  # azureml_inference_server_http.server.routes.main_blueprint


def adopt() -> None:
    """A Flask `before_request` hook: set X-Ms-Request-Id to the request id if the client sent none."""
    from flask import g, request

    if request.environ.get(LEGACY_ENVIRON_KEY):
        return
    request_id = getattr(g, "request_id", "") or request.headers.get("x-request-id", "")
    if request_id:
        request.environ[LEGACY_ENVIRON_KEY] = request_id  # request.headers reads the environ on each access


def install_on(app) -> None:
    """Run `adopt` after the inference server's own before-request hooks (which set `g.request_id`)."""
    run_after_server_hooks(app, adopt)


def run_after_server_hooks(app, hook) -> None:
    """Append `hook` (once) to the before-request hooks of the server's blueprint: it runs after the
    server's own, before the view that calls `run()`."""
    hooks = app.before_request_funcs.setdefault(SERVER_BLUEPRINT if SERVER_BLUEPRINT in app.blueprints else None, [])
    if hook not in hooks:
        hooks.append(hook)
