"""`aksinf serve`: run the platform locally (Envoy router + real inference servers on 127.0.0.1).

Without `--stack` it serves the sample: the diabetes endpoint of `examples/models/diabetes/endpoint.yaml`
(two versions behind /api/v1/service/diabetes/, 90/10 with a canary rollout), an `aks-inference:models`
value checked by the stack contract like any stack's. An endpoint is printed with its scoring URI and keys
(the endpoint's), each version's live share and how to pin it (header `azureml-model-deployment`).

Each service runs in its own environment built from its conda file (`local.environments`, cached
under `<run dir>/envs`), unless `--reuse-platform-env`. A service that cannot start (its environment
does not build, its `init()` raises) is reported with its log's last lines and answers a JSON 503
naming it; the others serve. `--strict` makes any such failure end `aksinf serve` with exit code 1.
One `aksinf serve` per run dir (`local.run_lock`): a second one exits 1 naming the first's PID, changing
nothing; a restart after a killed one first stops what the killed one left running; a router port
something else listens on exits 1 naming the port.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import signal
import sys
import typing
from pathlib import Path

from contract.stack import PROJECT_ROOT, Purpose

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"
SAMPLE_MODELS = SAMPLE / "endpoint.yaml"
# The least stack the contract accepts around the sample's models: a local sample deploys nothing, so no cluster
# rule applies (DevTest: no production minimums; local accounts on: no admin group needed). It is served as
# FastProd (autoscaling on) unless --purpose says otherwise.
SAMPLE_STACK = {"purpose": "DevTest", "cluster": {"disableLocalAccounts": False}}
SAMPLE_LOCATION = "westeurope"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", help="serve the `models` of stacks/Pulumi.<stack>.yaml (default: the diabetes sample)")
    parser.add_argument("--port", type=int, default=8800, help="router port on 127.0.0.1 (default 8800)")
    parser.add_argument("--purpose", choices=typing.get_args(Purpose), help="cluster purpose (DevTest turns autoscaling off)")
    parser.add_argument("--run-dir", type=Path, default=PROJECT_ROOT / ".run", help="state: Envoy config, logs, keys")
    parser.add_argument(
        "--modeldata", metavar="DESTINATION",
        help="where services with dataCollection.storageEnabled send model data: file:///folder (default: "
        "<run-dir>/modeldata) or a local Blob Storage emulator, http://127.0.0.1:10000/devstoreaccount1/modeldata",
    )
    parser.add_argument(
        "--scale-down-window", type=float, default=60.0, metavar="SECONDS",
        help="scale down only to the highest replica count wanted in this window (default 60)",
    )
    parser.add_argument(
        "--reuse-platform-env", action="store_true",
        help="run every service on the platform's own Python environment instead of one built from its conda file",
    )
    parser.add_argument("--strict", action="store_true", help="exit with code 1 if any service fails to start (CI)")


def sample_stack():
    """The sample's models (examples/models/diabetes/endpoint.yaml) as a loaded stack; ConfigError if invalid."""
    import yaml

    from contract.loading import load_stack

    return load_stack({**SAMPLE_STACK, "models": yaml.safe_load(SAMPLE_MODELS.read_text())}, SAMPLE_LOCATION)


def _services(args):
    """(services and endpoints, purpose, token settings): the sample, or the `models` of a stack file (loaded once)."""
    from contract.loading import load_stack_file
    from local.platform import local_models

    if not args.stack:
        return local_models(sample_stack()), args.purpose or "FastProd", None
    stack = load_stack_file(args.stack)
    config = stack.config
    if not config.models:
        raise ValueError(f"stack {args.stack} has no aks-inference:models to serve")
    jwt = None
    if config.auth:
        from router.spec import JwtSettings

        jwt = JwtSettings(config.auth.issuer, (config.auth.audience,), jwks_uri=config.auth.jwks_uri, jwks_ca_bundle=local_ca_bundle())
    return local_models(stack), args.purpose or config.purpose, jwt


def run(args: argparse.Namespace) -> int:
    from local.platform import LocalPlatform
    from local.run_lock import RunDirBusy

    if args.scale_down_window < 0:
        print(f"aksinf serve: --scale-down-window must be >= 0 seconds, got {args.scale_down_window:g}", file=sys.stderr)
        return 2
    if args.modeldata:
        from aksinf_runtime.sinks import check_destination

        try:
            check_destination(args.modeldata)
        except ValueError as error:
            print(f"aksinf serve: --modeldata {args.modeldata}: {error}", file=sys.stderr)
            return 2
    try:
        services, purpose, jwt = _services(args)
    except ValueError as error:  # ConfigError included: every problem, with its key
        print(error, file=sys.stderr)
        return 2
    try:
        platform = LocalPlatform(
            services, args.run_dir, purpose=purpose, listen_port=args.port, jwt=jwt,
            scale_down_window_seconds=args.scale_down_window, modeldata=args.modeldata,
            environments=None if args.reuse_platform_env else args.run_dir / "envs",
            progress=lambda text: print(text, flush=True),
        )
    except ValueError as error:  # a corrupt keys file in the run dir
        print(f"aksinf serve: {error}", file=sys.stderr)
        return 2
    except RunDirBusy as error:  # another live `aksinf serve` on this run dir: nothing was changed
        print(f"aksinf serve: {error}", file=sys.stderr)
        return 1
    print(f"starting {len(platform.model_services)} service(s): Envoy + azureml-inference-server-http on 127.0.0.1 ...", flush=True)
    # Also during start-up: children live in their own sessions, so only we can stop them.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        platform.start()
        _print_endpoints(platform, services, purpose)
        if platform.failures and args.strict:
            print(f"aksinf serve: {len(platform.failures)} service(s) failed (--strict): "
                  f"{', '.join(platform.failures)}", file=sys.stderr, flush=True)
            return 1
        print(f"\nlogs under {args.run_dir}; Ctrl-C stops everything.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as error:  # Envoy failed to start, the router port is taken (PortBusy)
        print(f"aksinf serve: {error}", file=sys.stderr)
        return 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        print("stopping ...", flush=True)
        platform.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _print_endpoints(platform, services, purpose: str) -> None:
    print(f"\nrouter      {platform.url}   (admin {platform.admin_url}, metrics http://127.0.0.1:{platform.metrics_port}/metrics)")
    routes = {route.name: route for route in platform.endpoint_routes()}
    for item in services:
        if item.name in routes:
            _print_endpoint(platform, item, routes[item.name], purpose)
        else:
            _print_service(platform, item, purpose)
    sys.stdout.flush()


def _print_service(platform, service, purpose: str) -> None:
    uri = f"{platform.url}/api/v1/service/{service.name}/score"
    failure = platform.failures.get(service.name)
    state = "FAILED, " if failure else ""
    print(f"\nservice     {service.name}  ({state}{service.deployment.auth_mode} auth, purpose {purpose})")
    _print_environment(platform, service)
    if failure:
        _print_failure(failure, uri)
        return
    print(f"scoring URI {uri}")
    if service.deployment.collects_model_data:
        print(f"model data  {platform.modeldata}  (dataCollection.storageEnabled)")
    print(f"swagger URI {platform.url}/api/v1/service/{service.name}/swagger.json")
    _print_access(platform, service, uri)


def _print_endpoint(platform, endpoint, route, purpose: str) -> None:
    """An endpoint: its scoring URI and keys, then each version's share, environment and state."""
    from router.spec import VERSION_HEADER

    uri = f"{platform.url}/api/v1/service/{endpoint.name}/score"
    print(f"\nendpoint    {endpoint.name}  ({endpoint.service.deployment.auth_mode} auth, purpose {purpose}, "
          f"{len(endpoint.versions)} versions; the answering one is named in the response header {VERSION_HEADER})")
    print(f"scoring URI {uri}")
    _print_access(platform, endpoint.service, uri)
    print(f"pin         add -H '{VERSION_HEADER}: <version>' to reach one version (same key)")
    rollout = endpoint.entry.rollout
    if rollout is not None:
        print(f"rollout     steps {', '.join(f'{step}%' for step in rollout.steps)}, one healthy {rollout.analysis_window_seconds} s window each "
              f"(max 5xx rate {rollout.max_server_error_rate:g}, p99 <= {rollout.max_p99_latency_ratio:g}x the control's, "
              f"minRequests {rollout.min_requests}); live split in {platform.state_path}")
    shares = {share.version: share for share in route.versions}
    for service in endpoint.versions:
        share = shares.get(service.name)
        role = (f"{share.weight}%" if share and not share.mirror_percent else f"shadow {share.mirror_percent}%" if share else "-")
        tags = [share.version_type] + (["default"] if share.is_default else []) if share else []
        failure = platform.failures.get(service.name)
        print(f"version     {service.name}  {role}  ({', '.join([*tags, 'FAILED'] if failure else tags)})")
        _print_environment(platform, service, indent="  ")
        if failure:
            _print_failure(failure, uri)
    if any(s.deployment.collects_model_data for s in endpoint.versions):
        print(f"model data  {platform.modeldata}  (per version; `aksinf compare --endpoint {endpoint.name}` joins them)")


def _print_environment(platform, service, indent: str = "") -> None:
    environment = platform.environment_of.get(service.name)
    if environment is not None:
        print(f"{indent + 'environment':<11} {environment.path}  (Python {environment.python_version})")
    elif platform.environments is None:
        print(f"{indent + 'environment':<11} the platform's own (--reuse-platform-env)")
    for note in platform.notes(service):
        print(f"{indent + 'note':<11} {note}")


def _print_access(platform, service, uri: str) -> None:
    keys = platform.keys.get(service.name, [])
    for label, key in zip(("primary key", "secondary key"), keys):
        print(f"{label:<11} {key}")
    for label, line in try_lines(service, uri, keys, platform.jwt):
        print(f"{label:<11} {line}")


def _print_failure(failure, uri: str) -> None:
    print(f"failed      {failure.reason}")
    if failure.log:
        print(f"log         {failure.log}" + (", last lines:" if failure.last_lines() else ""))
        for line in failure.last_lines():
            print(f"            | {line}")
    print(f"scoring URI {uri}  (answers 503 naming this failure)")


# The file a rawhttp script reads from a multipart upload: request.files["image"] / .files.get("image").
_UPLOAD_FIELD = re.compile(r"""\.files(?:\.get\(|\[)\s*["']([^"']+)["']""")
_RAWHTTP = re.compile(r"^\s*@rawhttp\b", re.MULTILINE)


def local_ca_bundle(system_bundle: Path | None = None) -> str:
    """The CAs Envoy checks the JWKS host against in local mode: the system bundle where the OS has one
    at the Debian path (the router image's), else certifi's (macOS and others). Envoy refuses a cluster
    whose CA file is missing, which would take every local service down."""
    import certifi

    from router.spec import SYSTEM_CA_BUNDLE

    bundle = system_bundle or Path(SYSTEM_CA_BUNDLE)
    return str(bundle) if bundle.is_file() else certifi.where()


def try_lines(service, uri: str, keys: list[str], jwt=None) -> list[tuple[str, str]]:
    """A ready-to-paste `curl` for `service` (label, text), plus a hint where one is needed.

    Body: `sample-request.json` in the service folder as JSON; else, for an `@rawhttp` entry script, a
    `sample-request.<ext>` file as a multipart upload (`curl -F`, the field the script reads from
    `request.files`, default `file`); else `{"data": []}`. Auth: a key service gets its primary key, a
    token service `$TOKEN` and how to get one."""
    folder = service.folder
    header = ""
    hints = []
    if service.deployment.auth_mode == "key" and keys:
        header = f"-H {shlex.quote('Authorization: Bearer ' + keys[0])} "
    elif service.deployment.auth_mode == "token":
        header = '-H "Authorization: Bearer $TOKEN" '
        hints.append(("token", _token_hint(jwt)))
    script = service.entry_script.read_text(encoding="utf-8", errors="replace")
    uploads = sorted(p for p in folder.glob("sample-request.*") if p.suffix != ".json" and p.is_file())
    if not (folder / "sample-request.json").exists() and uploads and _RAWHTTP.search(script):
        field = (_UPLOAD_FIELD.search(script) or [None, "file"])[1]
        body = f"-F {shlex.quote(f'{field}=@{uploads[0]}')}"
    else:
        sample = folder / "sample-request.json"
        data = f"@{sample}" if sample.exists() else json.dumps({"data": []})
        body = f"-H 'Content-Type: application/json' --data {shlex.quote(data)}"
    return [("try", f"curl -s {header}{body} {uri}"), *hints]


def _token_hint(jwt) -> str:
    """How to get a token the router accepts (Entra ID v2 token for the stack's audience)."""
    if jwt is None:
        return "this router has no aks-inference:auth, so it refuses every token (401): serve a --stack that sets it"
    audience = jwt.audiences[0]
    tenant = jwt.issuer.rstrip("/").removesuffix("/v2.0").rsplit("/", 1)[-1]
    # https://learn.microsoft.com/cli/azure/account#az-account-get-access-token
    return (f"TOKEN=$(az account get-access-token --tenant {tenant} --scope {shlex.quote(audience + '/.default')} "
            "--query accessToken -o tsv)  (issuer " + jwt.issuer + ")")
