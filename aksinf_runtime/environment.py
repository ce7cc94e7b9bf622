"""The model container's environment contract: every variable a model replica reads, in one table.

The model image starts `python -m aksinf_runtime.serve`, which runs azureml-inference-server-http
with this runtime's logging and model data collector. The deployers (the Pod spec in
`components/`, the local launcher in `local/`) import these names and never spell them again.
"""

from __future__ import annotations

# The inference server's own variables, as v1's containers set them.
MODEL_DIR = "AZUREML_MODEL_DIR"  # what init() reads to find the models
ENTRY_SCRIPT = "AZUREML_ENTRY_SCRIPT"
APP_ROOT = "AML_APP_ROOT"  # put on sys.path; searched for swagger*.json
WORKER_COUNT = "WORKER_COUNT"  # gunicorn workers = the replica's concurrency
SCORING_TIMEOUT_MS = "SCORING_TIMEOUT_MS"
WORKER_TIMEOUT = "WORKER_TIMEOUT"  # gunicorn's hard kill, seconds
APP_INSIGHTS_ENABLED = "AML_APP_INSIGHTS_ENABLED"
APP_INSIGHTS_KEY = "AML_APP_INSIGHTS_KEY"

# This runtime's variables.
SERVICE_NAME = "AKSINF_SERVICE_NAME"  # in every log line and in model data paths
# A v1-layout service's registered models, `name:version,name:version` (registered_models.encode);
# ModelDataCollector takes a model's version from it. Empty or unset for a flat model folder.
REGISTERED_MODELS = "AKSINF_REGISTERED_MODELS"
MODELDATA_ENABLED = "AML_MODEL_DC_STORAGE_ENABLED"  # v1's switch for ModelDataCollector
MODELDATA_DESTINATION = "AKSINF_MODELDATA_DESTINATION"  # file:///dir | blob container URL | emulator URL
MODELDATA_SPOOL = "AKSINF_MODELDATA_SPOOL"  # where batches wait for upload
MODELDATA_BATCH_SECONDS = "AKSINF_MODELDATA_BATCH_SECONDS"
MODELDATA_BATCH_BYTES = "AKSINF_MODELDATA_BATCH_BYTES"
MODELDATA_SPOOL_LIMIT_BYTES = "AKSINF_MODELDATA_SPOOL_LIMIT_BYTES"
MODELDATA_RETRY_MAX_SECONDS = "AKSINF_MODELDATA_RETRY_MAX_SECONDS"
MODELDATA_SHUTDOWN_SECONDS = "AKSINF_MODELDATA_SHUTDOWN_SECONDS"
