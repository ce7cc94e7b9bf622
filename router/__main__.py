"""The router image's entry point: `python -m router control-plane` or `python -m router envoy`.

Both containers of a router pod run this image. The control plane writes Envoy's bootstrap into the
shared config directory; the Envoy container waits for it, then becomes Envoy (exec: Envoy is PID 1
of its container and receives the kubelet's signals).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import NoReturn

from router.environment import RouterEnvironment
from router.envoy_files import BOOTSTRAP_FILE, envoy_argv

BOOTSTRAP_POLL_SECONDS = 0.2


def run_envoy(environment: RouterEnvironment) -> NoReturn:
    bootstrap = Path(environment.config_dir) / BOOTSTRAP_FILE
    while not bootstrap.exists():
        time.sleep(BOOTSTRAP_POLL_SECONDS)
    argv = envoy_argv(bootstrap, concurrency=environment.envoy_concurrency)
    os.execv(argv[0], argv)


def main(argv: list[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="python -m router", description="aks-inference router (azureml-fe)")
    parser.add_argument("role", choices=["control-plane", "envoy"], nargs="?", default="control-plane")
    args = parser.parse_args(argv)
    environment = RouterEnvironment.from_environ()
    if args.role == "envoy":
        run_envoy(environment)
    from router.kubernetes import main as in_cluster  # the kubernetes client only where it is used

    in_cluster(environment)


if __name__ == "__main__":
    main()
