"""`aksinf compare --endpoint E`: how an endpoint's versions differ on the same requests.

Every version of an endpoint (live or shadow) runs as its own service named after the version, so the
model-data collector writes its records under `<version>/<model>/<model version>/<designation>/...`
(aksinf_runtime/collector.py: JSON lines with `request_id`, and `features` or `data` per row) and its
server logs one line per request (`"POST /score 200 12.345ms 42"`, with `request_id` and `service`, through
aksinf_runtime/logs.py). A mirrored request carries the same `x-request-id` to the shadow, so joining on
it pairs the two predictions of one client request.

`report()` is the pure part: predictions and served requests in, per version: agreement with the baseline
(the control version unless told otherwise) on the requests both answered, exact and within a numeric
tolerance; latency percentiles; 4xx/5xx counts. The command reads a local run directory (`make run`,
`aksinf serve`: `.run/modeldata` and `.run/logs`) and prints a table, or JSON with `--json`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from contract.errors import ConfigError
from contract.loading import load_stack_file
from contract.stack import PROJECT_ROOT

PERCENTILES = (50, 90, 99)
# azureml-inference-server-http logs "<method> <path> <status> <ms>ms <length>" after each request.
SERVER_LINE = re.compile(r"^[A-Z]+ (?P<path>/\S*) (?P<status>\d{3}) (?P<ms>[0-9.]+)ms")
SCORE_PATH = "/score"


@dataclass(frozen=True)
class Served:
    """One request a version's server answered."""

    version: str
    request_id: str
    status: int
    latency_ms: float


@dataclass(frozen=True)
class VersionReport:
    version: str
    predictions: int  # requests with collected predictions
    joined: int  # of those, requests the baseline also answered (0 for the baseline)
    agreed_exact: int
    agreed_within_tolerance: int
    requests: int  # scoring requests in the server log
    server_errors: int  # 5xx
    client_errors: int  # 4xx
    latency_ms: dict[str, float]  # "p50" ... over the logged requests

    @property
    def agreement_rate(self) -> float | None:
        return self.agreed_exact / self.joined if self.joined else None

    @property
    def agreement_rate_within_tolerance(self) -> float | None:
        return self.agreed_within_tolerance / self.joined if self.joined else None


@dataclass(frozen=True)
class Report:
    endpoint: str
    baseline: str
    tolerance: float
    versions: tuple[VersionReport, ...]


def percentile(samples: list[float], q: int) -> float:
    """Nearest-rank percentile (no interpolation: every value reported was observed)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def close(a: Any, b: Any, tolerance: float) -> bool:
    """Equal, numbers within `tolerance` (absolute or relative), structures compared element by element."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b  # true/false are labels, not 1/0
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, tolerance) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], tolerance) for k in a)
    return a == b


def report(endpoint: str, versions: Iterable[str], baseline: str, predictions: Mapping[str, Mapping[str, list]],
           served: Iterable[Served], tolerance: float) -> Report:
    """`predictions`: version -> request id -> the rows it predicted for that request."""
    by_version: dict[str, list[Served]] = defaultdict(list)
    for request in served:
        by_version[request.version].append(request)
    reference = predictions.get(baseline, {})
    rows = []
    for version in versions:
        mine = predictions.get(version, {})
        shared = [] if version == baseline else [rid for rid in mine if rid in reference]
        latencies = [r.latency_ms for r in by_version[version]]
        rows.append(VersionReport(
            version=version,
            predictions=len(mine),
            joined=len(shared),
            agreed_exact=sum(mine[rid] == reference[rid] for rid in shared),
            agreed_within_tolerance=sum(close(mine[rid], reference[rid], tolerance) for rid in shared),
            requests=len(by_version[version]),
            server_errors=sum(r.status >= 500 for r in by_version[version]),
            client_errors=sum(400 <= r.status < 500 for r in by_version[version]),
            latency_ms={f"p{q}": percentile(latencies, q) for q in PERCENTILES} if latencies else {},
        ))
    return Report(endpoint, baseline, tolerance, tuple(rows))


# --------------------------------------------------------------------------- reading a run directory


def _json_lines(path: Path) -> Iterable[dict]:
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line of a file still being written
        if isinstance(record, dict):
            yield record


def read_predictions(modeldata: Path, versions: Iterable[str], designation: str) -> dict[str, dict[str, list]]:
    """version -> request id -> rows (`features` or `data`), from `<modeldata>/<version>/*/*/<designation>/**.jsonl`."""
    found: dict[str, dict[str, list]] = {}
    for version in versions:
        rows: dict[str, list] = defaultdict(list)
        for path in sorted((modeldata / version).glob(f"*/*/{designation}/**/*.jsonl")):
            for record in _json_lines(path):
                if record.get("request_id"):
                    rows[record["request_id"]].append(record.get("features", record.get("data")))
        found[version] = dict(rows)
    return found


def read_served(log_dir: Path, versions: Iterable[str]) -> list[Served]:
    """Scoring requests from the model servers' JSON logs (`<log-dir>/<version>-<port>.log`)."""
    served = []
    for version in versions:
        for path in sorted(log_dir.glob(f"{version}-*.log")):
            for record in _json_lines(path):
                match = SERVER_LINE.match(str(record.get("message", "")))
                if match and match["path"].split("?")[0] == SCORE_PATH and record.get("service", version) == version:
                    served.append(Served(version, str(record.get("request_id", "")), int(match["status"]), float(match["ms"])))
    return served


# --------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", required=True, help="the endpoint (models[].name with versions)")
    parser.add_argument("--stack", help="stack whose config names the versions (default: the sample `make run` serves)")
    parser.add_argument("--versions", help="comma-separated versions instead of the stack's")
    parser.add_argument("--baseline", help="version the others are compared with (default: the control, else the default)")
    parser.add_argument("--run-dir", type=Path, default=PROJECT_ROOT / ".run", help="local run directory (modeldata/ and logs/)")
    parser.add_argument("--designation", default="predictions", help="collector designation holding the predictions")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="numbers agree within this absolute or relative difference")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def _versions(args: argparse.Namespace) -> tuple[list[str], str]:
    """(versions, baseline) from the flags, or from the stack's endpoint entry."""
    if args.versions:
        names = [name.strip() for name in args.versions.split(",") if name.strip()]
        return names, args.baseline or names[0]
    from aksinf.serve import sample_stack

    stack = load_stack_file(args.stack) if args.stack else sample_stack()
    entries = {entry.name: entry for entry in stack.config.models}
    entry = entries.get(args.endpoint)
    if entry is None or not entry.versions:
        endpoints = [name for name, e in entries.items() if e.versions]
        raise ValueError(f"--endpoint {args.endpoint!r}: stack {args.stack or 'sample'!r} has no such endpoint; allowed: {', '.join(endpoints) or 'none'}")
    control = [v.name for v in entry.versions if v.version_type == "control"]
    default = [v.name for v in entry.versions if v.is_default]
    return [v.name for v in entry.versions], args.baseline or (control or default)[0]


def run(args: argparse.Namespace) -> int:
    try:
        versions, baseline = _versions(args)
    except (ConfigError, ValueError) as error:
        print(f"aksinf compare: {error}", file=sys.stderr)
        return 2
    if baseline not in versions or args.tolerance < 0:
        print(f"aksinf compare: --baseline must be one of {', '.join(versions)} and --tolerance >= 0", file=sys.stderr)
        return 2
    predictions = read_predictions(args.run_dir / "modeldata", versions, args.designation)
    result = report(args.endpoint, versions, baseline, predictions, read_served(args.run_dir / "logs", versions), args.tolerance)
    if args.json:
        rows = [{**asdict(v), "agreementRate": v.agreement_rate, "agreementRateWithinTolerance": v.agreement_rate_within_tolerance}
                for v in result.versions]
        print(json.dumps({"endpoint": result.endpoint, "baseline": baseline, "tolerance": args.tolerance, "versions": rows}, indent=2))
    else:
        print(format_report(result))
    return 0


def format_report(result: Report) -> str:
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    header = f"{'version':<24} {'predictions':>11} {'joined':>7} {'exact':>7} {'±tol':>7} {'requests':>8} {'5xx':>5} {'4xx':>5} " + \
        " ".join(f"{'p' + str(q) + ' ms':>9}" for q in PERCENTILES)
    lines = [f"endpoint {result.endpoint}: agreement with {result.baseline} (tolerance {result.tolerance:g})", header]
    for v in result.versions:
        latency = " ".join(f"{v.latency_ms['p' + str(q)]:>9.1f}" if v.latency_ms else f"{'-':>9}" for q in PERCENTILES)
        lines.append(f"{v.version:<24} {v.predictions:>11} {v.joined:>7} {rate(v.agreement_rate):>7} "
                     f"{rate(v.agreement_rate_within_tolerance):>7} {v.requests:>8} {v.server_errors:>5} {v.client_errors:>5} {latency}")
    return "\n".join(lines)
