"""`aksinf plan --stack NAME [--policy-config FILE]` (`make plan STACK=NAME`): the offline plan of a stack, for
pull-request review.

Runs the real program under mocks (no credentials), writes `plans/<stack>.json` and the rendered
manifests, diffs against the previous plan, runs the policy pack; non-zero on a mandatory violation.
`--policy-config` takes the file `pulumi up --policy-pack-config` takes (review/policy_config.py), so a
rule made advisory (or mandatory) there is judged the same way here; a bad file stops before anything runs.
`--live-state` takes the router's state document (the live split of each versioned endpoint, which the router
owns) and prints it beside the configured split; a bad file stops before anything runs, too (exit 2).
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
    parser.add_argument("--live-state", type=Path, metavar="FILE",
                        help="the router's state document, to show each endpoint's live split beside the configured one: "
                             "kubectl get configmap aks-inference-router-state -n aks-inference -o jsonpath='{.data.state\\.json}' > FILE")


def run(args: argparse.Namespace) -> int:
    try:
        read_stack_file(args.stack)
    except ConfigError as error:  # no such stack, or a file that is not a stack file
        print(error, file=sys.stderr)
        return 2
    from review import policy_config
    from review.plan import main, read_live_state

    overrides = {}
    if args.policy_config is not None:
        try:
            overrides = policy_config.read(args.policy_config)
        except ConfigError as error:
            print(f"{len(error.issues)} problem(s) in the policy config {args.policy_config}:", file=sys.stderr)
            for issue in error.issues:
                print(f"  - {issue}", file=sys.stderr)
            return 2
    live_state = None
    if args.live_state is not None:
        try:
            live_state = read_live_state(args.live_state)
        except ConfigError as error:
            print(f"{len(error.issues)} problem(s) in the live state {args.live_state}:", file=sys.stderr)
            for issue in error.issues:
                print(f"  - {issue}", file=sys.stderr)
            return 2
    return main(args.stack, args.out, policy_overrides=overrides, live_state=live_state)
