"""`ModelDataCollector`, shaped like Azure ML v1's `azureml.monitoring.ModelDataCollector`.

Migrating an entry script means changing one import:

    from aksinf_runtime import ModelDataCollector      # was: from azureml.monitoring import ...

    def init():
        global inputs_dc, prediction_dc
        inputs_dc = ModelDataCollector("diabetes-ridge", designation="inputs", feature_names=[...])
        prediction_dc = ModelDataCollector("diabetes-ridge", designation="predictions", feature_names=["y"])

    def run(raw):
        data = ...
        correlation = inputs_dc.collect(data)
        prediction_dc.collect(result, correlation)

Records are JSON Lines (v1 wrote CSV) in blobs under
`<service>/<model>/<version>/<designation>/<yyyy>/<mm>/<dd>/` of the `modeldata` container, one
line per row: `time`, `correlation_id`, `request_id` (the router's `x-request-id`), and `features`
(a name -> value object, when `feature_names` fit the row) or `data`.

`model_version` left out (or v1's "default") is the version of `model_name` the replica serves, as v1 on
AKS filled it in: the highest registered version of that name in a v1-layout model folder
(`AKSINF_REGISTERED_MODELS`), else "default".

As in v1, collection happens only where the deployment enabled it (`dataCollection.storageEnabled`,
seen here as `AML_MODEL_DC_STORAGE_ENABLED=true`); elsewhere `collect()` does nothing, so the same
script runs everywhere. `workspace` is accepted for v1 compatibility and not part of the path.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Sequence

from aksinf_runtime import environment
from aksinf_runtime.logs import current_request_id
from aksinf_runtime.registered_models import registered_version
from aksinf_runtime.shipping import Shipper, ShipperSettings
from aksinf_runtime.sinks import sink_for

log = logging.getLogger("aksinf_runtime.modeldata")

# A blob path segment: no slashes, no dot-only names, nothing a portal or a query would trip on.
SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
V1_DESIGNATIONS = ("inputs", "predictions", "labels", "signals", "general")

_shipper: Shipper | None = None
_shipper_pid: int | None = None
_shipper_lock = threading.Lock()


def collection_enabled(environ: dict[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get(environment.MODELDATA_ENABLED, "").strip().lower() in ("true", "1", "yes")


def shared_shipper() -> Shipper:
    """The process's shipper, started on first use (in each server worker, after the fork)."""
    global _shipper, _shipper_pid
    with _shipper_lock:
        if _shipper is None or _shipper_pid != os.getpid():
            settings = ShipperSettings.from_environment()
            sink = sink_for(settings.destination) if settings.destination else None
            if sink is None:
                log.error("model data collection is on but %s is not set: records stay in %s", environment.MODELDATA_DESTINATION, settings.spool_root)
            _shipper, _shipper_pid = Shipper(settings, sink), os.getpid()
            atexit.register(_shipper.close)  # gunicorn workers leave through sys.exit: atexit runs
        return _shipper


class ModelDataCollector:
    def __init__(
        self,
        model_name: str,
        designation: str = "default",
        feature_names: Sequence[str] | None = None,
        workspace: str = "default/default/default",
        webservice_name: str | None = None,
        model_version: str | None = None,
        collection_name: str = "default",
    ):
        webservice_name = webservice_name or os.environ.get(environment.SERVICE_NAME) or "default"
        if model_version in (None, "default"):  # v1 on AKS filled in the deployed model's version
            model_version = registered_version(model_name) or "default"
        problems = [
            f"{parameter}={value!r}: must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
            for parameter, value in (
                ("model_name", model_name),
                ("designation", designation),
                ("webservice_name", webservice_name),
                ("model_version", str(model_version)),
                ("collection_name", collection_name),
            )
            if not SEGMENT.match(value or "")
        ]
        if feature_names is not None and not all(isinstance(n, str) and n for n in feature_names):
            problems.append(f"feature_names={feature_names!r}: must be a list of non-empty strings")
        if problems:
            raise ValueError("ModelDataCollector: " + "; ".join(problems))
        self.model_name = model_name
        self.designation = designation
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.workspace = workspace
        self.webservice_name = webservice_name
        self.model_version = str(model_version)
        # v1: 'signals' and 'general' write to the collection's file; other designations use their own name.
        self.file_stem = collection_name if designation in ("signals", "general") else designation
        self.enabled = collection_enabled()
        self._shipper = shared_shipper() if self.enabled else None

    def collect(self, input_data, user_correlation_id: str = "") -> str:
        """Queue one record per row of `input_data`; returns the correlation id (pass it to the next collector)."""
        request_id = current_request_id()
        correlation_id = str(user_correlation_id or request_id or uuid.uuid4())
        if self._shipper is None:
            return correlation_id
        now = datetime.datetime.now(datetime.timezone.utc)
        head = {"time": now.isoformat(timespec="microseconds").replace("+00:00", "Z"), "correlation_id": correlation_id}
        if request_id:
            head["request_id"] = request_id
        lines = [
            json.dumps({**head, **row}, separators=(",", ":"), ensure_ascii=False, default=_plain) + "\n"
            for row in rows_of(input_data, self.feature_names)
        ]
        if lines:
            folder = f"{self.webservice_name}/{self.model_name}/{self.model_version}/{self.designation}/{now:%Y/%m/%d}"
            self._shipper.enqueue(f"{folder}/{self.file_stem}", "".join(lines), len(lines))
        return correlation_id


def rows_of(data, feature_names: list[str] | None) -> list[dict]:
    """v1 wrote one CSV row per input row; we write one JSON object per row."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # a pandas DataFrame
        return [{"features": row} for row in data.to_dict("records")]
    if hasattr(data, "tolist"):  # numpy arrays and scalars
        data = data.tolist()
    if not isinstance(data, (list, tuple)):
        return [{"data": data}]
    if feature_names and len(data) == len(feature_names) and not any(isinstance(v, (list, tuple, dict)) for v in data):
        data = [data]  # one flat row
    rows = []
    for item in data:
        if hasattr(item, "tolist"):
            item = item.tolist()
        if feature_names and isinstance(item, (list, tuple)) and len(item) == len(feature_names):
            rows.append({"features": dict(zip(feature_names, item))})
        else:
            rows.append({"data": item})
    return rows


def _plain(value):
    """JSON for what json cannot encode by itself: numpy values, dates, anything else as text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)
