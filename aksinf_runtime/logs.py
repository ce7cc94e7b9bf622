"""Model server logs as JSON lines that carry the router's request id.

Envoy sets `x-request-id` on every request and logs it (`request_id`) in its JSON access log;
azureml-inference-server-http takes the same header as its request id (`flask.g.request_id`).
`install()` makes every log record of the server carry that id and swaps the server's own
formatter for `JsonFormatter`, so one Log Analytics query joins the two sides on `request_id`.
A user's `logging.json` keeps working; it can print the id with `%(request_id)s`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from aksinf_runtime import environment


def current_request_id() -> str:
    """The request id of the scoring request being served by this thread, or ''."""
    flask = sys.modules.get("flask")  # no request can be in flight if Flask was never imported
    if flask is None or not flask.has_request_context():
        return ""
    return getattr(flask.g, "request_id", "") or flask.request.headers.get("x-request-id", "")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, keys as in the router's access log (`time`, `request_id`, ...)."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: str = "%", **_):
        super().__init__(fmt=None, datefmt=datefmt)
        self.service = os.environ.get(environment.SERVICE_NAME, "")

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            line["request_id"] = request_id
        if self.service:
            line["service"] = self.service
        refused = getattr(record, "refused", "")  # deadlines: why a request was not run
        if refused:
            line["refused"] = refused
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def install() -> None:
    """Call before the inference server configures logging (its workers inherit this on fork)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "adds_request_id", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = current_request_id()
        return record

    factory.adds_request_id = True
    logging.setLogRecordFactory(factory)
    # The server's logging.json names this class; dictConfig resolves it when it loads the file.
    from azureml_inference_server_http import log_config

    log_config.AMLLogFormatter = JsonFormatter
