"""Model data storage: one storage account and `modeldata` container per stack, written with workload identity.

Created only when a service collects model data (v1 `dataCollection.storageEnabled`). Each such
service gets its own user-assigned identity, federated with its Kubernetes ServiceAccount through
the cluster's OIDC issuer, holding `Storage Blob Data Contributor` on the container only. Shared
keys are switched off on the account: nothing can use an account key, so none is ever read or stored.
Blob and container soft delete keep a deleted blob or container recoverable for SOFT_DELETE_DAYS (a
retention rule's deletions too: collected data is gone for good that many days after it expires).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native.authorization as authorization
import pulumi_azure_native.managedidentity as managedidentity
import pulumi_azure_native.storage as storage

from components.azure_roles import (
    STORAGE_BLOB_DATA_CONTRIBUTOR,
    assignment_name,
    role_definition_id,
)
from contract.names import Names
from contract.stack import StackConfig

CONTAINER = "modeldata"
TOKEN_AUDIENCE = "api://AzureADTokenExchange"  # what the AKS workload identity webhook's token is issued for
SOFT_DELETE_DAYS = 7  # the policy pack's minimum (storage-blob-soft-delete)


@dataclass(frozen=True)
class Collector:
    """A service that collects model data, and the ServiceAccount its pods run as."""

    service: str
    namespace: str
    service_account: str

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


@dataclass
class ModelDataStorageArgs:
    config: StackConfig
    names: Names
    resource_group_name: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    collectors: list[Collector]


class ModelDataStorage(pulumi.ComponentResource):
    def __init__(self, name: str, args: ModelDataStorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("aks-inference:modeldata:ModelDataStorage", name, None, opts)
        config, names = args.config, args.names
        child = pulumi.ResourceOptions(parent=self)
        self.account = storage.StorageAccount(
            f"{name}-account",
            account_name=names.model_data_account,
            resource_group_name=args.resource_group_name,
            location=config.location,
            kind="StorageV2",
            sku={"name": "Standard_ZRS" if config.is_production else "Standard_LRS"},
            access_tier="Hot",
            minimum_tls_version="TLS1_2",
            enable_https_traffic_only=True,
            allow_blob_public_access=False,
            allow_shared_key_access=False,
            default_to_o_auth_authentication=True,
            allow_cross_tenant_replication=False,
            tags=names.tags(config.purpose),
            opts=child,
        )
        storage.BlobServiceProperties(
            f"{name}-blob-service",
            blob_services_name="default",  # the only name Azure accepts
            account_name=self.account.name,
            resource_group_name=args.resource_group_name,
            delete_retention_policy={"enabled": True, "days": SOFT_DELETE_DAYS},
            container_delete_retention_policy={"enabled": True, "days": SOFT_DELETE_DAYS},
            opts=child,
        )
        self.container = storage.BlobContainer(
            f"{name}-container",
            container_name=CONTAINER,
            account_name=self.account.name,
            resource_group_name=args.resource_group_name,
            public_access="None",
            opts=child,
        )
        if config.model_data.retention_days:
            storage.ManagementPolicy(
                f"{name}-retention",
                management_policy_name="default",  # the only name Azure accepts
                account_name=self.account.name,
                resource_group_name=args.resource_group_name,
                policy={
                    "rules": [
                        {
                            "name": "expire-model-data",
                            "enabled": True,
                            "type": "Lifecycle",
                            "definition": {
                                "filters": {"blob_types": ["blockBlob"], "prefix_match": [f"{CONTAINER}/"]},
                                "actions": {"base_blob": {"delete": {"days_after_creation_greater_than": config.model_data.retention_days}}},
                            },
                        }
                    ]
                },
                opts=child,
            )
        self.container_url = self.account.primary_endpoints.apply(lambda endpoints: f"{endpoints.blob.rstrip('/')}/{CONTAINER}")

        self.client_ids: dict[str, pulumi.Output[str]] = {}
        for collector in args.collectors:
            identity = managedidentity.UserAssignedIdentity(
                f"{name}-{collector.service}-identity",
                resource_name_=names.of(f"id-modeldata-{collector.service}"),
                resource_group_name=args.resource_group_name,
                location=config.location,
                tags=names.tags(config.purpose),
                opts=child,
            )
            managedidentity.FederatedIdentityCredential(
                f"{name}-{collector.service}-federation",
                federated_identity_credential_resource_name=f"{collector.namespace}-{collector.service_account}",
                resource_name_=identity.name,
                resource_group_name=args.resource_group_name,
                issuer=args.oidc_issuer_url,
                subject=collector.subject,
                audiences=[TOKEN_AUDIENCE],
                opts=child,
            )
            authorization.RoleAssignment(
                f"{name}-{collector.service}-writer",
                role_assignment_name=assignment_name(names.stack, "modeldata", collector.service, "StorageBlobDataContributor"),
                principal_id=identity.principal_id,
                principal_type="ServicePrincipal",
                role_definition_id=role_definition_id(STORAGE_BLOB_DATA_CONTRIBUTOR),
                scope=self.container.id,  # this container only, not the account
                opts=child,
            )
            self.client_ids[collector.service] = identity.client_id
        self.register_outputs({"accountName": self.account.name, "containerUrl": self.container_url})
