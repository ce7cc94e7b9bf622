"""Container entry point: azureml-inference-server-http with JSON logs carrying the request id.

    python -m aksinf_runtime.serve --entry_script PATH --port 5001   (the `azmlinfsrv` arguments)

Besides the JSON logs (`logs.install`), when a server worker loads the app (gunicorn's `import_app`,
after the server and gunicorn have set up `sys.path` and the working directory):

- `install_v1_compat` appends `compat/` (v1's `azureml.core.model.Model.get_model_path`,
  `azureml.monitoring.ModelDataCollector`) to the END of `sys.path`, right before the server imports
  the entry script (`UserScript.load_script`, after the server appended the app root and source
  directory): every other entry (the app root, PYTHONPATH, site-packages) is searched first, so a
  real azureml-core always wins;
- `request_ids.install_on` gives the entry script v1's `X-Ms-Request-Id` header;
- `deadlines.refuse_unstartable` answers 504 instead of starting `run()` for a request past its
  deadline or whose client has gone.
"""

from __future__ import annotations

import sys
from pathlib import Path

COMPAT_DIR = Path(__file__).resolve().parent / "compat"


def install_v1_compat(path: list[str] | None = None) -> None:
    """Append the v1 compatibility tree to the end of `path` (default `sys.path`), once.

    Appending (never inserting) is the whole rule: `import azureml.core` finds an installed or vendored
    azureml-core first, and falls back to `compat/azureml` only when there is none."""
    path = sys.path if path is None else path
    entry = str(COMPAT_DIR)
    if entry in path:
        path.remove(entry)  # something was appended since: move back to the end
    path.append(entry)


def _wrap_app_loader() -> None:
    """Patch gunicorn's app import: install the compat tree and the request hook as the app loads."""
    from gunicorn import util

    original = util.import_app
    if getattr(original, "aksinf_wrapped", False):
        return

    def import_app(module: str):
        _compat_before_entry_script()
        app = original(module)
        if hasattr(app, "before_request_funcs"):  # the inference server's Flask app
            from aksinf_runtime import deadlines, request_ids

            request_ids.install_on(app)
            request_ids.run_after_server_hooks(app, deadlines.refuse_unstartable)
        return app

    import_app.aksinf_wrapped = True
    util.import_app = import_app


def _compat_before_entry_script() -> None:
    """Install the compat tree when the server imports the entry script (the last sys.path change
    before it), or now if this server version has no such hook."""
    try:
        from azureml_inference_server_http.server.user_script import UserScript
    except ImportError:
        install_v1_compat()
        return
    load_script = getattr(UserScript, "load_script", None)
    if load_script is None:
        install_v1_compat()
        return
    if getattr(load_script, "aksinf_wrapped", False):
        return

    def load_with_compat(self, *args, **kwargs):
        install_v1_compat()
        return load_script(self, *args, **kwargs)

    load_with_compat.aksinf_wrapped = True
    UserScript.load_script = load_with_compat


def main(argv: list[str] | None = None, host: str | None = None) -> None:
    from aksinf_runtime import logs

    logs.install()
    _wrap_app_loader()
    from azureml_inference_server_http import amlserver

    if host is not None:
        amlserver.DEFAULT_HOST = host
    sys.argv = ["azmlinfsrv", *(sys.argv[1:] if argv is None else argv)]
    amlserver.run()


if __name__ == "__main__":
    main()
