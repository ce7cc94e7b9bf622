"""Read and validate the running Pulumi stack's config (the `aks-inference:` namespace + region)."""

from __future__ import annotations

import pulumi
import pulumi.runtime.config as runtime_config

from contract.loading import LoadedStack, load_stack, parse_config_value
from contract.names import Names
from contract.stack import NAMESPACE, StackConfig


def read_stack() -> LoadedStack:
    """Every key of our namespace (unknown ones included, so they can be rejected), validated at once,
    with the model services loaded."""
    prefix = f"{NAMESPACE}:"
    values, secret_keys = {}, []
    for full_key, raw in sorted(runtime_config.CONFIG.get().items()):
        if full_key.startswith(prefix):
            key = full_key[len(prefix):]
            values[key] = parse_config_value(raw)
            if runtime_config.is_config_secret(full_key):
                secret_keys.append(key)
    location = pulumi.Config("azure-native").get("location")
    return load_stack(values, location, secret_keys, deployment=(pulumi.get_project(), pulumi.get_stack()))


def stack_names(config: StackConfig) -> Names:
    return Names(pulumi.get_project(), pulumi.get_stack(), config.location)
