"""Container entry point: azureml-inference-server-http with JSON logs carrying the request id.

    python -m aksinf_runtime.serve --entry_script PATH --port 5001   (the `azmlinfsrv` arguments)
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None, host: str | None = None) -> None:
    from aksinf_runtime import logs

    logs.install()
    from azureml_inference_server_http import amlserver

    if host is not None:
        amlserver.DEFAULT_HOST = host
    sys.argv = ["azmlinfsrv", *(sys.argv[1:] if argv is None else argv)]
    amlserver.run()


if __name__ == "__main__":
    main()
