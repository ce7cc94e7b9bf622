"""Import time and run time of the Pulumi program under mocks, per shipped stack.

Each sample is a fresh interpreter (imports are cold the way `pulumi preview` sees them);
the median of 5 is reported. Baseline in the same run: `python -c pass` startup.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench.common import print_table, write_results

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = 5

_MEASURE = """
import json, resource, time
t0 = time.perf_counter()
import pulumi, pulumi_kubernetes, pydantic
import pulumi_azure_native.containerservice, pulumi_azure_native.network, pulumi_azure_native.containerregistry
import pulumi_azure_native.authorization, pulumi_azure_native.operationalinsights, pulumi_azure_native.resources
import pulumi_azure_native.managedidentity
import components.platform
t1 = time.perf_counter()
from review.offline import run_program
result = run_program({stack!r})
t2 = time.perf_counter()
assert result.error is None, result.error
print(json.dumps({{"import_s": t1 - t0, "run_s": t2 - t1, "resources": len(result.resources),
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _sample(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _startup() -> float:
    import time

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t0


def main() -> dict:
    results: dict = {"samples": SAMPLES, "interpreter_startup_s": statistics.median(_startup() for _ in range(SAMPLES)), "stacks": {}}
    rows = []
    for stack in ("dev", "prod"):
        samples = [_sample(_MEASURE.format(stack=stack)) for _ in range(SAMPLES)]
        summary = {key: statistics.median(s[key] for s in samples) for key in ("import_s", "run_s", "peak_rss_mb")}
        summary["resources"] = samples[0]["resources"]
        results["stacks"][stack] = summary
        rows.append([stack, summary["resources"], f"{summary['import_s']:.2f}", f"{summary['run_s']:.2f}", f"{summary['peak_rss_mb']:.0f}"])
    print_table(["stack", "resources", "import s", "run s", "peak RSS MB"], rows)
    print(f"(interpreter startup baseline: {results['interpreter_startup_s']:.3f} s; median of {SAMPLES})")
    write_results("program", results)
    return results


if __name__ == "__main__":
    main()
