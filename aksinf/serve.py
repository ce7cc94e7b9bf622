"""`aksinf serve`: run the platform locally (Envoy router + real inference servers on 127.0.0.1)."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import typing
from pathlib import Path

from contract.stack import PROJECT_ROOT, Purpose

SAMPLE = PROJECT_ROOT / "examples" / "models" / "diabetes"


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


def _services(args):
    """(services, purpose, token settings): the sample, or the `models` of a stack file (loaded once)."""
    from contract.loading import load_stack_file
    from contract.service import load_service

    if not args.stack:
        return [load_service(SAMPLE, "diabetes")], args.purpose or "FastProd", None
    stack = load_stack_file(args.stack)
    config = stack.config
    if not config.models:
        raise ValueError(f"stack {args.stack} has no aks-inference:models to serve")
    jwt = None
    if config.auth:
        from router.spec import JwtSettings

        jwt = JwtSettings(config.auth.issuer, (config.auth.audience,), jwks_uri=config.auth.jwks_uri)
    return list(stack.services), args.purpose or config.purpose, jwt


def run(args: argparse.Namespace) -> int:
    from local.platform import LocalPlatform

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
        )
    except ValueError as error:  # a corrupt keys file in the run dir
        print(f"aksinf serve: {error}", file=sys.stderr)
        return 2
    print(f"starting {len(services)} service(s): Envoy + azureml-inference-server-http on 127.0.0.1 ...", flush=True)
    # Also during start-up: children live in their own sessions, so only we can stop them.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        platform.start()
        _print_endpoints(platform, services, purpose)
        print(f"\nlogs under {args.run_dir}; Ctrl-C stops everything.", flush=True)
        while True:
            signal.pause()
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as error:  # a model server failed to start
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
    for service in services:
        uri = f"{platform.url}/api/v1/service/{service.name}/score"
        print(f"\nservice     {service.name}  ({service.deployment.auth_mode} auth, purpose {purpose})")
        print(f"scoring URI {uri}")
        if service.deployment.collects_model_data:
            print(f"model data  {platform.modeldata}  (dataCollection.storageEnabled)")
        print(f"swagger URI {platform.url}/api/v1/service/{service.name}/swagger.json")
        keys = platform.keys.get(service.name, [])
        for label, key in zip(("primary key", "secondary key"), keys):
            print(f"{label:<11} {key}")
        sample = service.folder / "sample-request.json"
        body = f"@{sample}" if sample.exists() else json.dumps({"data": []})
        header = f"-H {shlex.quote('Authorization: Bearer ' + keys[0])} " if keys else ""
        print(f"try         curl -s {header}-H 'Content-Type: application/json' --data {shlex.quote(body)} {uri}")
