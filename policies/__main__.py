"""The CrossGuard entry point: `pulumi preview --policy-pack policies`. Serves forever; never import it in tests."""

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.rules import ALL

PolicyPack(name="aks-inference", enforcement_level=EnforcementLevel.ADVISORY, policies=ALL)
