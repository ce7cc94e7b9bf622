"""Entry point for `pulumi preview --policy-pack policies`: only builds the pack (it serves forever).

The CLI runs this file with `policies/` as the script directory, so the repository root is
put on the path for `policies.rules` and `contract.vmsizes`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies.pack import PACK  # noqa: E402
from policies.rules import ALL  # noqa: E402

PolicyPack(name=PACK, enforcement_level=EnforcementLevel.ADVISORY, policies=ALL)
