"""aks-inference: validate the stack config, build the platform, export its outputs."""

import pulumi

from components.stack import read_stack, stack_names
from contract.errors import ConfigError

try:
    stack = read_stack()
except ConfigError as error:  # nothing is registered: report every problem, no traceback
    raise pulumi.RunError(str(error)) from None

from components.platform import Platform, PlatformArgs  # noqa: E402  (Pulumi imports only after validation)

platform = Platform("aks-inference", PlatformArgs(stack.config, stack.services, stack_names(stack.config), stack.versions))

pulumi.export("clusterName", platform.cluster.cluster.name)
pulumi.export("kubeconfig", platform.cluster.kubeconfig)
pulumi.export("registryLoginServer", platform.registry.login_server)
pulumi.export("egressAllowlist", [rule.as_output() for rule in platform.egress_allowlist])
pulumi.export("network", platform.network_summary())
if platform.router:
    pulumi.export("scoringBaseUrl", platform.router.base_url)
    pulumi.export("services", platform.scoring_endpoints())
    if platform.models.model_data:
        pulumi.export("modelDataUrl", platform.models.model_data.container_url)
