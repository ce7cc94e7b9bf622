"""`aksinf plan --stack NAME`: the resource inventory of a stack from an offline run (no credentials)."""

from __future__ import annotations

import argparse
import sys

from components.offline import run_program, stack_file


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", default="dev", help="stack name: reads stacks/Pulumi.<stack>.yaml (default dev)")


def run(args: argparse.Namespace) -> int:
    if not stack_file(args.stack).exists():
        print(f"no stack file {stack_file(args.stack)}", file=sys.stderr)
        return 2
    result = run_program(args.stack)
    if result.error is not None:
        print(result.error, file=sys.stderr)
        return 1
    by_urn = {r.urn: r for r in result.resources}
    print(f"stack {args.stack}: {len(result.custom_resources)} resources, {len(result.resources) - len(result.custom_resources)} components")
    for resource in result.resources:
        parent = by_urn.get(resource.parent)
        marks = "".join(m for m, on in (("P", resource.protect), ("I", bool(resource.ignore_changes))) if on)
        print(f"  {resource.type:<58} {resource.name:<52} {marks:<2} <- {parent.name if parent else '(stack)'}")
    return 0
