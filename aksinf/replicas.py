"""`aksinf replicas`: how many replicas a load needs (Azure ML v1's documented formula)."""

from __future__ import annotations

import argparse
import sys

from router.autoscaler import replicas_for_load


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rps", type=float, required=True, help="target requests per second")
    parser.add_argument("--seconds", type=float, required=True, help="time one request takes, in seconds")
    parser.add_argument("--utilization", type=float, default=0.7, help="target utilization, 0-1 (default 0.7)")
    parser.add_argument("--concurrency", type=int, default=1, help="maxConcurrentRequestsPerContainer (default 1)")


def run(args: argparse.Namespace) -> int:
    try:
        print(replicas_for_load(args.rps, args.seconds, args.utilization, args.concurrency))
    except ValueError as error:
        print(f"aksinf replicas: {error}", file=sys.stderr)
        return 2
    return 0
