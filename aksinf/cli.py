"""`aksinf <command>`: each command is a module with `add_arguments(parser)` and `run(args) -> int`.

Commands are imported lazily so `aksinf replicas` does not pay for Pulumi imports.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "serve": ("aksinf.serve", "run the platform locally: Envoy router + model servers on 127.0.0.1"),
    "replicas": ("aksinf.replicas", "replicas needed for a load (Azure ML v1 formula)"),
    "import-v1": ("aksinf.import_v1", "print the stack-config entry for an Azure ML v1 deployment"),
    "import-endpoint": ("aksinf.import_endpoint", "print the stack-config entry for an Azure ML v1 AksEndpoint (versions)"),
    "compare": ("aksinf.compare", "compare the versions of an endpoint on collected predictions, joined by request id"),
    "plan": ("aksinf.plan", "offline plan of a stack: resources, manifests, policies, diff"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aksinf", description="aks-inference: Azure ML v1 style model serving on AKS")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    args, rest = parser.parse_known_args(argv)
    module_name, help_text = COMMANDS[args.command]
    module = importlib.import_module(module_name)
    command_parser = argparse.ArgumentParser(prog=f"aksinf {args.command}", description=help_text)
    module.add_arguments(command_parser)
    return int(module.run(command_parser.parse_args(rest)) or 0)


if __name__ == "__main__":
    sys.exit(main())
