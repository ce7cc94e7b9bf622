"""The pack's identity: its name and the version in PulumiPolicy.yaml, shared by the CLI entry point
(`policies/__main__.py`) and the offline analyzer (`review/analyzer.py`)."""

from pathlib import Path

import yaml

PACK = "aks-inference"
VERSION = yaml.safe_load((Path(__file__).parent / "PulumiPolicy.yaml").read_text())["version"]
LEVELS = ("mandatory", "advisory")
