"""`aksinf replicas`: Azure ML v1's sizing formula on the command line."""

import subprocess
import sys


def test_replicas_command():
    out = subprocess.run(
        [sys.executable, "-m", "aksinf", "replicas", "--rps", "20", "--seconds", "10", "--utilization", "0.7", "--concurrency", "1"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == "286"
    bad = subprocess.run([sys.executable, "-m", "aksinf", "replicas", "--rps", "20", "--seconds", "10", "--utilization", "7"], capture_output=True, text=True)
    assert bad.returncode == 2 and "utilization" in bad.stderr
