"""The program under mocks with 1, 10, 100 and 1,000 model services: run time, peak memory, time per
resource, against a bare loop that registers the same Pulumi resource types in the same mocks (our overhead).

Each measurement runs in a fresh interpreter; service folders are tiny copies of the sample.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import print_table, write_results

ROOT = Path(__file__).resolve().parent.parent
COUNTS = (1, 10, 100, 1000)

_PROGRAM = """
import json, resource, time, sys
from contract.loading import read_stack_file
from review.offline import run_program
config = read_stack_file("dev")
config["aks-inference:models"] = [{{"name": f"svc-{{i:04d}}", "path": f"{folder}/svc-{{i:04d}}"}} for i in range({count})]
t0 = time.perf_counter()
result = run_program("dev", config)
elapsed = time.perf_counter() - t0
assert result.error is None, result.error
print(json.dumps({{"seconds": elapsed, "resources": len(result.custom_resources), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

# The same resource types per service, registered directly with no components, config or hashing.
_BARE = """
import json, resource, time
import pulumi, pulumi_docker as docker, pulumi_kubernetes as k8s, pulumi_random as random
from review.offline import PROGRAM, run_program
import tempfile, pathlib
program = pathlib.Path(tempfile.mkdtemp()) / "bare.py"
program.write_text('''
import pulumi, pulumi_docker as docker, pulumi_kubernetes as k8s, pulumi_random as random
for i in range({count}):
    n = f"svc-{{i:04d}}"
    docker.Image(n, image_name=f"acr.azurecr.io/{{n}}:t", build=docker.DockerBuildArgs(context="."), build_on_preview=False)
    for key in ("p", "s"):
        random.RandomPassword(f"{{n}}-{{key}}", length=32, special=False)
    md = {{"name": n, "namespace": "models"}}
    k8s.core.v1.Secret(f"{{n}}-secret", metadata=md, string_data={{"k": "v"}})
    k8s.apps.v1.Deployment(f"{{n}}-deploy", metadata=md, spec={{"selector": {{"matchLabels": {{"a": n}}}}, "template": {{"metadata": {{"labels": {{"a": n}}}}, "spec": {{"containers": [{{"name": "m", "image": "x"}}]}}}}}})
    k8s.core.v1.Service(f"{{n}}-svc", metadata=md, spec={{"ports": [{{"port": 5001}}]}})
    k8s.networking.v1.NetworkPolicy(f"{{n}}-np", metadata=md, spec={{"podSelector": {{}}}})
    k8s.policy.v1.PodDisruptionBudget(f"{{n}}-pdb", metadata=md, spec={{"maxUnavailable": 1}})
''')
t0 = time.perf_counter()
result = run_program("dev", {{}}, program=program)
elapsed = time.perf_counter() - t0
assert result.error is None, result.error
print(json.dumps({{"seconds": elapsed, "resources": len(result.custom_resources), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _services(folder: Path, count: int) -> None:
    sample = ROOT / "examples" / "models" / "diabetes"
    for i in range(count):
        target = folder / f"svc-{i:04d}"
        if not target.exists():
            shutil.copytree(sample, target, ignore=shutil.ignore_patterns("train.py", "__pycache__"))


def main() -> dict:
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="aksinf-bench-services-") as tmp:
        folder = Path(tmp)
        for count in COUNTS:
            _services(folder, count)
            ours = _run(_PROGRAM.format(folder=folder, count=count))
            bare = _run(_BARE.format(count=count))
            per_ours = ours["seconds"] / max(1, ours["resources"]) * 1000
            per_bare = bare["seconds"] / max(1, bare["resources"]) * 1000
            results.append({"services": count, "program": ours, "bare_loop": bare,
                            "ms_per_resource": round(per_ours, 2), "bare_ms_per_resource": round(per_bare, 2),
                            "overhead_ratio": round(per_ours / per_bare, 2) if per_bare else None})
            rows.append([count, ours["resources"], f"{ours['seconds']:.2f}", f"{ours['peak_rss_mb']:.0f}", f"{per_ours:.2f}", f"{per_bare:.2f}", f"{per_ours / per_bare:.2f}"])
    print_table(["services", "resources", "run s", "peak RSS MB", "ms/resource", "bare ms/resource", "overhead"], rows)
    write_results("services", {"counts": results})
    return {"counts": results}


if __name__ == "__main__":
    main()
