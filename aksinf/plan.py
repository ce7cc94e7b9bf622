"""`aksinf plan --stack NAME [--policy-config FILE]` (`make plan STACK=NAME`): the offline plan of a stack, for
pull-request review.

Runs the real program under mocks (no credentials), writes `plans/<stack>.json` and the rendered
manifests, diffs against the previous plan, runs the policy pack; non-zero on a mandatory violation.
`--policy-config` takes the file `pulumi up --policy-pack-config` takes (review/policy_config.py), so a
rule made advisory (or mandatory) there is judged the same way here; a bad file stops before anything runs.
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
    parser.add_argument("--policy-config", type=Path, metavar="FILE",
                        help="policy pack config, as for `pulumi up --policy-pack-config FILE`: rule -> level or {enforcementLevel, ...}")


def run(args: argparse.Namespace) -> int:
    try:
        read_stack_file(args.stack)
    except ConfigError as error:  # no such stack, or a file that is not a stack file
        print(error, file=sys.stderr)
        return 2
    from review import policy_config
    from review.plan import main

    overrides = {}
    if args.policy_config is not None:
        try:
            overrides = policy_config.read(args.policy_config)
        except ConfigError as error:
            print(f"{len(error.issues)} problem(s) in the policy config {args.policy_config}:", file=sys.stderr)
            for issue in error.issues:
                print(f"  - {issue}", file=sys.stderr)
            return 2
    return main(args.stack, args.out, policy_overrides=overrides)
