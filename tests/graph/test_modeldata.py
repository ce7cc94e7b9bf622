"""Model data storage in the resource graph, offline: the account's security settings, the container, and
for each collecting service a workload identity federated with its ServiceAccount and allowed on the
container only. No account key is read or stored anywhere."""

from __future__ import annotations

import json
import re

import kubernetes_validate
import pytest

from contract.names import Names
from tests.pulumi_harness import run_program, with_config

ACCOUNT = "azure-native:storage:StorageAccount"
CONTAINER = "azure-native:storage:BlobContainer"
IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
FEDERATION = "azure-native:managedidentity:FederatedIdentityCredential"
ROLE = "azure-native:authorization:RoleAssignment"
POLICY = "azure-native:storage:ManagementPolicy"
BLOB_SERVICE = "azure-native:storage:BlobServiceProperties"
CLUSTER = "azure-native:containerservice:ManagedCluster"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE_ACCOUNT = "kubernetes:core/v1:ServiceAccount"
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
SAMPLE = "examples/models/diabetes"


def _pod(run, service: str) -> dict:
    return run.one(DEPLOYMENT, f"aks-inference-models-{service}-deployment").inputs["spec"]["template"]


def _env(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}


def _writers(run) -> list:
    return [r for r in run.of_type(ROLE) if r.inputs["roleDefinitionId"].endswith(BLOB_DATA_CONTRIBUTOR)]


@pytest.fixture(scope="module")
def mixed_run():
    """Two collecting services and one that does not collect."""
    models = [
        {"name": "diabetes", "path": SAMPLE},
        {"name": "churn", "path": SAMPLE, "deployment": {"namespace": "scoring"}},
        {"name": "quiet", "path": SAMPLE, "deployment": {"dataCollection": {"storageEnabled": False}}},
    ]
    run = run_program("dev", with_config("dev", models=models, modelData={"retentionDays": 90}))
    assert run.error is None, run.error
    return run


def test_the_account_is_locked_down(dev_run):
    account = dev_run.one(ACCOUNT)
    assert account.inputs["minimumTlsVersion"] == "TLS1_2"
    assert account.inputs["enableHttpsTrafficOnly"] is True
    assert account.inputs["allowBlobPublicAccess"] is False
    assert account.inputs["allowSharedKeyAccess"] is False  # no account key can be used, so none is handed out
    assert account.inputs["defaultToOAuthAuthentication"] is True
    assert account.inputs["sku"] == {"name": "Standard_LRS"}  # DevTest
    assert account.inputs["accountName"] == Names("aks-inference", "dev", "westeurope").model_data_account
    container = dev_run.one(CONTAINER)
    assert (container.inputs["containerName"], container.inputs["publicAccess"]) == ("modeldata", "None")
    assert container.inputs["accountName"] == account.outputs["name"]
    assert dev_run.outputs["modelDataUrl"] == f"{account.outputs['primaryEndpoints']['blob']}modeldata"


def test_deleted_blobs_and_containers_are_recoverable_for_a_week(dev_run):
    account, service = dev_run.one(ACCOUNT), dev_run.one(BLOB_SERVICE)
    assert service.inputs["blobServicesName"] == "default"
    assert service.inputs["accountName"] == account.outputs["name"]
    assert account.urn in service.dependencies
    assert service.inputs["deleteRetentionPolicy"] == {"enabled": True, "days": 7}
    assert service.inputs["containerDeleteRetentionPolicy"] == {"enabled": True, "days": 7}


def test_the_pods_write_with_workload_identity_on_the_container_only(dev_run):
    identity = dev_run.one(IDENTITY, "aks-inference-models-modeldata-diabetes-identity")
    federation = dev_run.one(FEDERATION)
    cluster = dev_run.one(CLUSTER)
    pod = _pod(dev_run, "diabetes")
    service_account = dev_run.one(SERVICE_ACCOUNT, "aks-inference-models-diabetes-serviceaccount")

    # The federated credential trusts exactly this ServiceAccount's tokens from this cluster's issuer.
    assert cluster.inputs["oidcIssuerProfile"] == {"enabled": True}
    assert cluster.inputs["securityProfile"]["workloadIdentity"] == {"enabled": True}
    assert federation.inputs["issuer"] == cluster.outputs["oidcIssuerProfile"]["issuerURL"]
    account_meta = service_account.inputs["metadata"]
    assert federation.inputs["subject"] == f"system:serviceaccount:{account_meta['namespace']}:{account_meta['name']}"
    assert federation.inputs["audiences"] == ["api://AzureADTokenExchange"]
    assert federation.inputs["resourceName"] == identity.outputs["name"]

    # The pod runs as that ServiceAccount, which names the identity; the webhook does the rest.
    assert pod["spec"]["serviceAccountName"] == account_meta["name"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert account_meta["annotations"] == {"azure.workload.identity/client-id": identity.outputs["clientId"]}
    assert service_account.inputs["automountServiceAccountToken"] is False

    # Blob Data Contributor for that identity, scoped to the container, not the account or the group.
    [writer] = _writers(dev_run)
    container = dev_run.one(CONTAINER)
    assert writer.inputs["scope"] == container.outputs["id"]
    assert writer.inputs["scope"].endswith("/blobServices/default/containers/modeldata")
    assert writer.inputs["principalId"] == identity.outputs["principalId"]
    assert writer.inputs["principalType"] == "ServicePrincipal"

    env = _env(pod)
    assert env["AML_MODEL_DC_STORAGE_ENABLED"] == "true"
    assert env["AKSINF_MODELDATA_DESTINATION"] == dev_run.outputs["modelDataUrl"]
    spool = next(v for v in pod["spec"]["volumes"] if v["name"] == "modeldata-spool")
    assert spool["emptyDir"]["sizeLimit"] == "1Gi"
    assert int(env["AKSINF_MODELDATA_SPOOL_LIMIT_BYTES"]) < 1024**3  # the collector stops before the kubelet evicts


def test_no_account_key_anywhere(dev_run):
    assert not [token for token in dev_run.invokes if "listStorageAccount" in token or "Keys" in token]
    everything = json.dumps([r.inputs for r in dev_run.resources], default=str)
    assert not re.search(r"AccountKey|account_key|accountKey|SharedAccessSignature", everything)


def test_one_account_per_stack_and_an_identity_per_collecting_service(mixed_run):
    assert len(mixed_run.of_type(ACCOUNT)) == 1 and len(mixed_run.of_type(CONTAINER)) == 1
    subjects = sorted(f.inputs["subject"] for f in mixed_run.of_type(FEDERATION))
    assert subjects == ["system:serviceaccount:models:model-diabetes", "system:serviceaccount:scoring:model-churn"]
    identities = {i.outputs["principalId"] for i in mixed_run.of_type(IDENTITY) if "modeldata" in i.name}
    writers = _writers(mixed_run)
    assert {w.inputs["principalId"] for w in writers} == identities and len(identities) == 2
    assert {w.inputs["scope"] for w in writers} == {mixed_run.one(CONTAINER).outputs["id"]}
    assert len({w.inputs["roleAssignmentName"] for w in writers}) == 2

    quiet = _pod(mixed_run, "quiet")
    assert "azure.workload.identity/use" not in quiet["metadata"]["labels"]
    assert not any(name.startswith(("AKSINF_MODELDATA", "AML_MODEL_DC")) for name in _env(quiet))
    assert "annotations" not in mixed_run.one(SERVICE_ACCOUNT, "aks-inference-models-quiet-serviceaccount").inputs["metadata"]
    for resource in mixed_run.custom_resources:
        if resource.type.startswith("kubernetes:") and not resource.type.startswith("kubernetes:helm"):
            kubernetes_validate.validate(resource.inputs, "1.34", strict=True)


def test_retention_deletes_old_model_data(mixed_run, dev_run):
    rule = mixed_run.one(POLICY).inputs["policy"]["rules"][0]
    assert rule["definition"]["actions"]["baseBlob"]["delete"] == {"daysAfterCreationGreaterThan": 90}
    assert rule["definition"]["filters"]["prefixMatch"] == ["modeldata/"]
    assert mixed_run.one(POLICY).inputs["accountName"] == mixed_run.one(ACCOUNT).outputs["name"]
    assert dev_run.of_type(POLICY) == []  # no retention configured: keep everything


def test_no_collecting_service_no_storage():
    models = [{"name": "diabetes", "path": SAMPLE, "deployment": {"dataCollection": {"storageEnabled": False}}}]
    run = run_program("dev", with_config("dev", models=models))
    assert run.error is None, run.error
    assert run.of_type(ACCOUNT) == [] and run.of_type(BLOB_SERVICE) == [] and run.of_type(FEDERATION) == [] and _writers(run) == []
    assert "modelDataUrl" not in run.outputs


def test_production_storage_is_zone_redundant(prod_with_models_collecting):
    assert prod_with_models_collecting.one(ACCOUNT).inputs["sku"] == {"name": "Standard_ZRS"}


@pytest.fixture(scope="module")
def prod_with_models_collecting(tmp_path_factory):
    from tests.certs import self_signed

    cert, key, _ = self_signed(tmp_path_factory.mktemp("tls"))
    config = with_config("prod", models=[{"name": "diabetes", "path": SAMPLE}], tls={"certificate": cert.read_text(), "key": key.read_text()})
    run = run_program("prod", config, secret_keys=("aks-inference:tls",))
    assert run.error is None, run.error
    return run


@pytest.mark.parametrize("days", [0, -5, "soon", 40000])
def test_bad_retention_is_refused_before_anything_is_registered(days):
    run = run_program("dev", with_config("dev", modelData={"retentionDays": days}))
    assert run.error is not None and "modelData.retentionDays: " in str(run.error) and f"(got {days!r})".replace("'", "") in str(run.error).replace("'", "")
    assert run.resources == []


def test_account_names_are_valid_and_stable_for_any_stack():
    for stack in ("dev", "prod", "a-very-long-stack-name-for-team-forecasting-eu"):
        name = Names("aks-inference", stack, "westeurope").model_data_account
        assert re.fullmatch(r"[a-z0-9]{3,24}", name), name
        assert name == Names("aks-inference", stack, "westeurope").model_data_account
    assert Names("p", "dev", "westeurope").model_data_account != Names("p", "dev", "northeurope").model_data_account
