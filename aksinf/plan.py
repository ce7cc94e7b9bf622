"""`aksinf plan --stack NAME` (`make plan STACK=NAME`): the offline plan of a stack, for pull-request review.

Runs the real program under mocks (no credentials), writes `plans/<stack>.json` and the rendered
manifests, diffs against the previous plan, runs the policy pack; non-zero on a mandatory violation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contract.errors import ConfigError
from contract.loading import read_stack_file
from contract.stack import PROJECT_ROOT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", default="dev", help="stack name: reads stacks/Pulumi.<stack>.yaml (default dev)")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "plans", help="where plans/<stack>.json and manifests go")


def run(args: argparse.Namespace) -> int:
    try:
        read_stack_file(args.stack)
    except ConfigError as error:  # no such stack, or a file that is not a stack file
        print(error, file=sys.stderr)
        return 2
    from review.plan import main

    return main(args.stack, args.out)
