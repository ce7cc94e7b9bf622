"""Run the real `azureml-inference-server-http` on 127.0.0.1.

`azmlinfsrv` binds 0.0.0.0 with no flag to change it (`constants.DEFAULT_HOST`,
star-imported into `amlserver`). Local mode and the tests must stay on loopback,
so this launcher patches `amlserver.DEFAULT_HOST` and then runs the server's own
entry point (`amlserver.run()`: argument parsing, env set-up, gunicorn), as the image's entry point
does (`python -m aksinf_runtime.serve`, `BOOT`). The launcher lays out the models and the v1
environment, then *replaces itself* (`exec`) with the service environment's interpreter running
the server, so the launcher's PID *is* the gunicorn master: SIGTERM stops it gracefully (in-flight
requests finish), SIGINT/SIGQUIT stop it at once.

Stable CLI (the local actuator and the tests spawn servers through it):

    python -m local.model_server --entry-script PATH --model-dir DIR --port PORT
        [--workers N] [--scoring-timeout-ms MS] [--source-dir DIR] [--run-dir DIR]
        [--service-name NAME] [--collect-model-data DESTINATION [--modeldata-spool DIR]]
        [--environment DIR]

- `--entry-script`: the v1 entry script (`init()` / `run()`).
- `--model-dir`: the service's model folder, laid out as the image lays it out (below).
- `--port`: the loopback port to listen on (`SERVER_PORT`).
- `--workers`: gunicorn sync workers (`WORKER_COUNT`, default 1); each worker
  takes one request at a time, so this is the replica's real concurrency and
  should equal the service's `maxConcurrentRequestsPerContainer`.
- `--scoring-timeout-ms`: `SCORING_TIMEOUT_MS`, default 60000 (the v1 AKS
  `scoringTimeoutMs` default; the bare server would use 3,600,000).
- `--source-dir`: the app root (`AML_APP_ROOT`, put on `sys.path`, searched for
  `swagger*.json` and `config.json`); defaults to the entry script's folder.
- `--run-dir`: the server's working directory, where the models are laid out; default a fresh
  private folder under the system temp directory, removed when the server stops.
- `--service-name`: `AKSINF_SERVICE_NAME`, in every log line and in model data paths.
- `--collect-model-data`: turns model data collection on (`AML_MODEL_DC_STORAGE_ENABLED`) and
  sends it to DESTINATION (`file:///folder` or the local emulator's
  `http://127.0.0.1:PORT/<account>/<container>`); `--modeldata-spool` is where batches wait.
- `--environment`: a service environment built by `local.environments` (`aksinf serve` builds one per
  environment tag): the server runs on its interpreter with `PYTHONPATH` = its runtime copy only, so
  nothing of the platform's `.venv` or of this project is importable. Without it, the server runs on
  this interpreter with this process's `PYTHONPATH` (`--reuse-platform-env`).

Logs are JSON lines carrying the router's request id (`aksinf_runtime.logs`), as in the cluster.

Models, as in the image and as v1 had them (`serving.translate`): the server runs in the run
directory, which holds `azureml-models/` (symlinks to the model folder, nothing copied). A v1-layout
model folder (`model/<name>/<version>/<one file or folder>`) *is* v1's `azureml-models/` tree, so
`Model.get_model_path(name[, version])` finds every registered model, and `AZUREML_MODEL_DIR` is
`<run dir>/azureml-models/<name>/<version>` for one registered model, `<run dir>/azureml-models` for
several; `AKSINF_REGISTERED_MODELS` lists them (the collector's model versions). A flat model folder
appears as `azureml-models/<service>/` and `AZUREML_MODEL_DIR` is the model folder itself, as before.

Environment set for the server, as v1 does in its containers:
`AZUREML_MODEL_DIR`, `AZUREML_ENTRY_SCRIPT`, `AML_APP_ROOT`, `WORKER_COUNT`,
`SCORING_TIMEOUT_MS`, and `WORKER_TIMEOUT` (gunicorn's hard kill, 300 s in v1)
raised to cover the scoring timeout so a long-but-allowed request is answered
with the server's own timeout instead of a dropped connection (v1 pain point).
gunicorn 27's control socket is turned off (`GUNICORN_CMD_ARGS`): its default
path is shared by every server of the user, so parallel replicas would fight
over it.

No keep-alive to replicas (here and in the image): every answer carries `Connection: close`, so the
router opens one connection per request (its cost is in bench/router.py's sample-model rows). The
server runs gunicorn's default `sync` worker (`amlserver_linux.run` passes no `--worker-class`), which
forces the close (`gunicorn/workers/sync.py`, `resp.force_close()`): a sync worker serves one
connection at a time, so an idle kept-open connection would block it for everyone else (the kubelet's
probes, the other router replicas). The installed worker class that keeps connections open, `gthread`
(gevent and eventlet are not installed, and run many requests per worker), breaks two v1 guarantees,
so it is not used:
- `scoringTimeoutMs`: the server cuts a slow `run()` off with SIGALRM, which works only when `run()`
  runs in the main thread (`azureml_inference_server_http/server/utils.py`, `timeout_supported`);
  gthread runs every request in a pool thread, so `run()` would go on holding the replica past the
  timeout without the server's "Scoring timeout" answer, and gunicorn's `WORKER_TIMEOUT` kill of a
  hung worker would not fire either (the worker's main thread keeps reporting alive).
- `maxConcurrentRequestsPerContainer` as one request per worker process: a gthread worker accepts
  connections on its main thread whatever its request thread is doing, and a kept-open connection
  stays with the process that accepted it, so with `--workers` > 1 two of the router's connections can
  share one busy process while another process idles: requests wait in the replica although a worker
  is free, which the router's per-replica cap (router/envoy_config.py) cannot see.

Readiness: `GET http://127.0.0.1:PORT/` answers 200 "Healthy" once `init()` ran
(gunicorn binds the port first, so earlier connections wait rather than fail).
If `init()` raises, the process exits with code 3 within about a second (what
v1 showed as CrashLoopBackOff); a bad argument exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from aksinf_runtime import environment as env
from aksinf_runtime import registered_models
from aksinf_runtime.sinks import check_destination
from contract.service import ModelService, RegisteredModel, model_layout
from contract.v1_files import DEFAULT_SCORING_TIMEOUT_MS
from local import environments
from local.net import LOOPBACK
from serving.translate import MODELS_DIR, model_dir_for, models_subdir, worker_timeout_seconds

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
    run_dir: str | os.PathLike[str] | None = None,
    environment: str | os.PathLike[str] | None = None,
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
    if run_dir is not None:
        argv += ["--run-dir", str(run_dir)]
    if environment is not None:
        argv += ["--environment", str(environment)]
    return argv


def command_for(
    service: ModelService, port: int, modeldata: str | None = None, modeldata_spool: Path | None = None,
    run_dir: Path | None = None, environment: Path | None = None,
) -> list[str]:
    """argv of one local replica of `service` on 127.0.0.1:`port` (one worker per allowed concurrent request).

    `modeldata`: where collected model data goes locally, used only if this service collects it.
    `run_dir`: the replica's working directory (default: a private temporary one).
    `environment`: the service's environment (`local.environments`; default: this interpreter)."""
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
        run_dir=run_dir,
        environment=environment,
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
    parser.add_argument("--run-dir", type=Path, help="working directory holding azureml-models/; default: a private temporary folder")
    parser.add_argument("--service-name", help="AKSINF_SERVICE_NAME: in log lines and model data paths")
    parser.add_argument("--collect-model-data", metavar="DESTINATION", type=_destination, help="turn model data collection on, to this destination")
    parser.add_argument("--modeldata-spool", type=Path, help="where model data batches wait for upload")
    parser.add_argument("--environment", type=Path, help="service environment to run in (local.environments); default: this interpreter")
    return parser


def _destination(text: str) -> str:
    try:
        check_destination(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def server_environment(
    args: argparse.Namespace, run_dir: Path | None = None, registered: Sequence[RegisteredModel] | None = None
) -> dict[str, str]:
    """The v1 container environment for these arguments.

    `run_dir`: where `lay_out_models` put `azureml-models/` (without one, a v1-layout model folder is
    addressed in place: it holds the same tree). `registered`: the model folder's registered models
    (default: detected with `contract.service.model_layout`)."""
    entry_script = args.entry_script.resolve()
    source_dir = (args.source_dir or entry_script.parent).resolve()
    model_dir = args.model_dir.resolve()
    if registered is None:
        registered, _ = model_layout(model_dir, "--model-dir")
    models_root = run_dir.resolve() / MODELS_DIR if run_dir is not None else model_dir
    worker_timeout = worker_timeout_seconds(args.scoring_timeout_ms)
    environment = {
        env.MODEL_DIR: str(model_dir_for(registered, models_root, model_dir)),
        env.ENTRY_SCRIPT: str(entry_script),
        env.APP_ROOT: str(source_dir),
        env.WORKER_COUNT: str(args.workers),
        env.SCORING_TIMEOUT_MS: str(args.scoring_timeout_ms),
        env.WORKER_TIMEOUT: os.environ.get(env.WORKER_TIMEOUT, str(worker_timeout)),
        "GUNICORN_CMD_ARGS": "--no-control-socket",
    }
    if registered:
        environment[env.REGISTERED_MODELS] = registered_models.encode(registered)
    if run_dir is not None:  # gunicorn would otherwise chdir back to where it was first imported
        environment["GUNICORN_CMD_ARGS"] += f" --chdir {shlex.quote(str(run_dir.resolve()))}"
    if args.service_name:
        environment[env.SERVICE_NAME] = args.service_name
    if args.collect_model_data:
        environment[env.MODELDATA_ENABLED] = "true"
        environment[env.MODELDATA_DESTINATION] = args.collect_model_data
        if args.modeldata_spool:
            environment[env.MODELDATA_SPOOL] = str(args.modeldata_spool.resolve())
    return environment


def lay_out_models(run_dir: Path, model_dir: Path, service_name: str, registered: Sequence[RegisteredModel]) -> Path:
    """`run_dir/azureml-models/` as the image has it, as symbolic links to `model_dir` (nothing copied):
    the v1 layout's folder becomes `azureml-models` itself, a flat one `azureml-models/<service>`.
    Returns the link. A previous layout is replaced; a folder holding real files is never deleted."""
    models = run_dir / MODELS_DIR
    if models.is_symlink():
        models.unlink()
    elif models.exists():
        if any(not path.is_symlink() and not path.is_dir() for path in models.rglob("*")):
            raise ValueError(f"{models} holds files that are not links to a model folder; allowed: an empty --run-dir")
        shutil.rmtree(models)
    link = run_dir / models_subdir(service_name, registered)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(model_dir.resolve(), target_is_directory=True)
    return link


# What the service environment's interpreter runs (`python -c BOOT <azmlinfsrv arguments>`): the image's
# entry point on 127.0.0.1, importing nothing but the standard library and aksinf_runtime. When the
# launcher made a private run directory, the gunicorn master (not its forked workers) removes it on exit;
# a SIGTERM before gunicorn installs its handlers then still exits through atexit.
PRIVATE_RUN_DIR = "AKSINF_PRIVATE_RUN_DIR"
BOOT = f"""# aks-inference model server (local.model_server)
import atexit, os, shutil, signal, sys
private = os.environ.pop({PRIVATE_RUN_DIR!r}, "")
if private:
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(private, ignore_errors=True))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
from aksinf_runtime import serve
serve.main(sys.argv[1:], host={LOOPBACK!r})
"""


def _absolute_path(value: str) -> str:
    return os.pathsep.join(os.path.abspath(entry) for entry in value.split(os.pathsep) if entry)


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.entry_script.is_file():
        parser.error(f"--entry-script: {args.entry_script} is not a file")
    if not args.model_dir.is_dir():
        parser.error(f"--model-dir: {args.model_dir} is not a directory")
    registered, issues = model_layout(args.model_dir.resolve(), "--model-dir")
    if issues:
        parser.error("; ".join(f"{issue.value}: {issue.problem}" for issue in issues))
    python, pythonpath = sys.executable, _absolute_path(os.environ.get("PYTHONPATH", ""))
    if args.environment is not None:
        try:
            environment = environments.load(args.environment.resolve())
        except ValueError as error:
            parser.error(f"--environment: {error}")
        python, pythonpath = str(environment.python), str(environment.runtime_path)
    if args.run_dir is None:
        label = re.sub(r"[^A-Za-z0-9_.-]", "_", args.service_name or "model")
        run_dir = Path(tempfile.mkdtemp(prefix=f"aksinf-{label}-"))
        os.environ[PRIVATE_RUN_DIR] = str(run_dir)
    else:
        run_dir = args.run_dir.resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        lay_out_models(run_dir, args.model_dir, args.service_name or args.model_dir.resolve().name, registered)
    except (OSError, ValueError) as error:
        parser.error(f"--run-dir: {error}")
    environment = server_environment(args, run_dir, registered)
    os.environ.update(environment)
    os.environ["PYTHONPATH"] = pythonpath  # absolute: the server starts in the run directory
    if not pythonpath:
        del os.environ["PYTHONPATH"]
    os.chdir(run_dir)
    server = [
        "--entry_script", environment[env.ENTRY_SCRIPT],
        "--model_dir", environment[env.MODEL_DIR],
        "--port", str(args.port),
        "--worker_count", str(args.workers),
    ]
    sys.stdout.flush()
    os.execv(python, [python, "-c", BOOT, *server])


if __name__ == "__main__":
    main()
