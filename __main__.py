"""aks-inference: validate the stack config, build the platform, export its outputs."""

import pulumi

from components.config import ConfigError
from components.stack import read_stack_config, stack_names

try:
    config = read_stack_config()
except ConfigError as error:  # nothing is registered: report every problem, no traceback
    raise pulumi.RunError(str(error)) from None

from components.platform import Platform, PlatformArgs  # noqa: E402  (Pulumi imports only after validation)

platform = Platform("aks-inference", PlatformArgs(config, stack_names(config)))

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
