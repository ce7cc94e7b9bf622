"""Built-in Azure role definitions the platform assigns, and deterministic assignment names."""

from __future__ import annotations

import uuid

import pulumi
import pulumi_azure_native.authorization as authorization

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"

_NAMESPACE = uuid.UUID("3b2f7c1e-9a56-4c1e-8f0a-61d0a1c2b7e4")


def role_definition_id(role: str) -> pulumi.Output[str]:
    subscription = authorization.get_client_config_output().subscription_id
    return subscription.apply(lambda sub: f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}")


def assignment_name(*parts: str) -> str:
    """Role assignment names must be GUIDs; derive them so re-runs never create duplicates."""
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))
