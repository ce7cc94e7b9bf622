"""Run the real `azureml-inference-server-http` on 127.0.0.1.

`azmlinfsrv` binds 0.0.0.0 with no flag to change it (`constants.DEFAULT_HOST`,
star-imported into `amlserver`). Local mode and the tests must stay on loopback,
so this launcher patches `amlserver.DEFAULT_HOST` and then runs the server's own
entry point (`amlserver.run()`: argument parsing, env set-up, gunicorn) in this
process. The launcher's PID *is* the gunicorn master: SIGTERM stops it
gracefully (in-flight requests finish), SIGINT/SIGQUIT stop it at once.

Stable CLI (the local actuator and the tests spawn servers through it):

    python -m local.model_server --entry-script PATH --model-dir DIR --port PORT
        [--workers N] [--scoring-timeout-ms MS] [--source-dir DIR]
        [--service-name NAME] [--collect-model-data DESTINATION [--modeldata-spool DIR]]

- `--entry-script`: the v1 entry script (`init()` / `run()`).
- `--model-dir`: exported as `AZUREML_MODEL_DIR` (what `init()` reads, as in v1).
- `--port`: the loopback port to listen on (`SERVER_PORT`).
- `--workers`: gunicorn sync workers (`WORKER_COUNT`, default 1); each worker
  takes one request at a time, so this is the replica's real concurrency and
  should equal the service's `maxConcurrentRequestsPerContainer`.
- `--scoring-timeout-ms`: `SCORING_TIMEOUT_MS`, default 60000 (the v1 AKS
  `scoringTimeoutMs` default; the bare server would use 3,600,000).
- `--source-dir`: the app root (`AML_APP_ROOT`, put on `sys.path`, searched for
  `swagger*.json` and `config.json`); defaults to the entry script's folder.
- `--service-name`: `AKSINF_SERVICE_NAME`, in every log line and in model data paths.
- `--collect-model-data`: turns model data collection on (`AML_MODEL_DC_STORAGE_ENABLED`) and
  sends it to DESTINATION (`file:///folder` or the local emulator's
  `http://127.0.0.1:PORT/<account>/<container>`); `--modeldata-spool` is where batches wait.

Logs are JSON lines carrying the router's request id (`aksinf_runtime.logs`), as in the cluster.

Environment set for the server, as v1 does in its containers:
`AZUREML_MODEL_DIR`, `AZUREML_ENTRY_SCRIPT`, `AML_APP_ROOT`, `WORKER_COUNT`,
`SCORING_TIMEOUT_MS`, and `WORKER_TIMEOUT` (gunicorn's hard kill, 300 s in v1)
raised to cover the scoring timeout so a long-but-allowed request is answered
with the server's own timeout instead of a dropped connection (v1 pain point).
gunicorn 27's control socket is turned off (`GUNICORN_CMD_ARGS`): its default
path is shared by every server of the user, so parallel replicas would fight
over it.

Readiness: `GET http://127.0.0.1:PORT/` answers 200 "Healthy" once `init()` ran
(gunicorn binds the port first, so earlier connections wait rather than fail).
If `init()` raises, the process exits with code 3 within about a second (what
v1 showed as CrashLoopBackOff); a bad argument exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from aksinf_runtime import environment as env
from aksinf_runtime.sinks import check_destination
from contract.service import ModelService
from contract.v1_files import DEFAULT_SCORING_TIMEOUT_MS
from local.net import LOOPBACK
from serving.translate import worker_timeout_seconds

DEFAULT_WORKERS = 1


def command(
    entry_script: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    port: int,
    workers: int = DEFAULT_WORKERS,
    scoring_timeout_ms: int = DEFAULT_SCORING_TIMEOUT_MS,
    source_dir: str | os.PathLike[str] | None = None,
    service_name: str | None = None,
    collect_model_data: str | None = None,
    modeldata_spool: str | os.PathLike[str] | None = None,
) -> list[str]:
    """The argv that starts one model server (for `subprocess.Popen`)."""
    argv = [
        sys.executable,
        "-m",
        "local.model_server",
        "--entry-script",
        str(entry_script),
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--scoring-timeout-ms",
        str(scoring_timeout_ms),
    ]
    if source_dir is not None:
        argv += ["--source-dir", str(source_dir)]
    if service_name is not None:
        argv += ["--service-name", service_name]
    if collect_model_data is not None:
        argv += ["--collect-model-data", collect_model_data]
    if modeldata_spool is not None:
        argv += ["--modeldata-spool", str(modeldata_spool)]
    return argv


def command_for(service: ModelService, port: int, modeldata: str | None = None, modeldata_spool: Path | None = None) -> list[str]:
    """argv of one local replica of `service` on 127.0.0.1:`port` (one worker per allowed concurrent request).

    `modeldata`: where collected model data goes locally, used only if this service collects it."""
    deployment = service.deployment
    collect = modeldata if deployment.collects_model_data else None
    return command(
        service.entry_script,
        service.model_dir,
        port,
        workers=deployment.max_concurrent,
        scoring_timeout_ms=deployment.scoring_timeout_ms,
        source_dir=service.source_dir,
        service_name=service.name,
        collect_model_data=collect,
        modeldata_spool=modeldata_spool if collect else None,
    )


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (got {value})")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port between 1 and 65535 (got {value})")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m local.model_server",
        description="Run azureml-inference-server-http bound to 127.0.0.1.",
    )
    parser.add_argument("--entry-script", required=True, type=Path, help="entry script with init() and run()")
    parser.add_argument("--model-dir", required=True, type=Path, help="exported as AZUREML_MODEL_DIR")
    parser.add_argument("--port", required=True, type=_port, help="loopback port to listen on")
    parser.add_argument("--workers", type=_positive, default=DEFAULT_WORKERS, help="gunicorn workers (WORKER_COUNT)")
    parser.add_argument(
        "--scoring-timeout-ms", type=_positive, default=DEFAULT_SCORING_TIMEOUT_MS, help="SCORING_TIMEOUT_MS"
    )
    parser.add_argument("--source-dir", type=Path, help="app root (AML_APP_ROOT); default: the entry script's folder")
    parser.add_argument("--service-name", help="AKSINF_SERVICE_NAME: in log lines and model data paths")
    parser.add_argument("--collect-model-data", metavar="DESTINATION", type=_destination, help="turn model data collection on, to this destination")
    parser.add_argument("--modeldata-spool", type=Path, help="where model data batches wait for upload")
    return parser


def _destination(text: str) -> str:
    try:
        check_destination(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def server_environment(args: argparse.Namespace) -> dict[str, str]:
    """The v1 container environment for these arguments."""
    entry_script = args.entry_script.resolve()
    source_dir = (args.source_dir or entry_script.parent).resolve()
    worker_timeout = worker_timeout_seconds(args.scoring_timeout_ms)
    environment = {
        env.MODEL_DIR: str(args.model_dir.resolve()),
        env.ENTRY_SCRIPT: str(entry_script),
        env.APP_ROOT: str(source_dir),
        env.WORKER_COUNT: str(args.workers),
        env.SCORING_TIMEOUT_MS: str(args.scoring_timeout_ms),
        env.WORKER_TIMEOUT: os.environ.get(env.WORKER_TIMEOUT, str(worker_timeout)),
        "GUNICORN_CMD_ARGS": "--no-control-socket",
    }
    if args.service_name:
        environment[env.SERVICE_NAME] = args.service_name
    if args.collect_model_data:
        environment[env.MODELDATA_ENABLED] = "true"
        environment[env.MODELDATA_DESTINATION] = args.collect_model_data
        if args.modeldata_spool:
            environment[env.MODELDATA_SPOOL] = str(args.modeldata_spool.resolve())
    return environment


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.entry_script.is_file():
        parser.error(f"--entry-script: {args.entry_script} is not a file")
    if not args.model_dir.is_dir():
        parser.error(f"--model-dir: {args.model_dir} is not a directory")
    environment = server_environment(args)
    os.environ.update(environment)

    from aksinf_runtime import serve

    serve.main(
        [
            "--entry_script", environment[env.ENTRY_SCRIPT],
            "--model_dir", environment[env.MODEL_DIR],
            "--port", str(args.port),
            "--worker_count", str(args.workers),
        ],
        host=LOOPBACK,
    )


if __name__ == "__main__":
    main()
