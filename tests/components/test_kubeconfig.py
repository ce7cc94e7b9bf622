"""The AKS exec kubeconfig rewritten per `cluster.kubeLogin` mode, argument for argument as
`kubelogin convert-kubeconfig -l <mode>` writes it (Azure/kubelogin pkg/internal/converter/convert.go)."""

from __future__ import annotations

import pytest
import yaml

from components.kubeconfig import INSTALL_HINT, convert_kubeconfig
from contract.errors import ConfigError

SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"  # the AKS Entra server application
CLIENT_ID = "80faf920-1908-4b52-b5ef-a8e7bedfc67a"  # the Azure CLI's AKS client application
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"

# What listClusterUserCredential(format=exec) returns for an Entra-only cluster
# (https://learn.microsoft.com/azure/aks/kubelogin-authentication).
AKS_EXEC_KUBECONFIG = f"""apiVersion: v1
kind: Config
clusters:
- cluster: {{certificate-authority-data: Q0E=, server: "https://aks-aksinf-prod.hcp.westeurope.azmk8s.io:443"}}
  name: aks-aksinf-prod
contexts:
- context: {{cluster: aks-aksinf-prod, user: clusterUser_rg-aksinf-prod_aks-aksinf-prod}}
  name: aks-aksinf-prod
current-context: aks-aksinf-prod
users:
- name: clusterUser_rg-aksinf-prod_aks-aksinf-prod
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      args: [get-token, --environment, AzurePublicCloud, --server-id, {SERVER_ID}, --client-id, {CLIENT_ID},
             --tenant-id, {TENANT}, --login, devicecode]
      command: kubelogin
      env: null
      installHint: "install kubelogin"
"""

EXPECTED_ARGS = {
    "azurecli": ["get-token", "--login", "azurecli", "--server-id", SERVER_ID],
    "workloadIdentity": ["get-token", "--login", "workloadidentity", "--server-id", SERVER_ID],
    "spn": ["get-token", "--login", "spn", "--server-id", SERVER_ID, "--client-id", CLIENT_ID, "--tenant-id", TENANT,
            "--environment", "AzurePublicCloud"],
    "interactive": ["get-token", "--login", "interactive", "--server-id", SERVER_ID, "--client-id", CLIENT_ID,
                    "--tenant-id", TENANT, "--environment", "AzurePublicCloud"],
}


@pytest.mark.parametrize("mode", sorted(EXPECTED_ARGS))
def test_each_mode_writes_kubelogins_exec_block(mode):
    converted = yaml.safe_load(convert_kubeconfig(AKS_EXEC_KUBECONFIG, mode))
    [user] = converted["users"]
    assert user["user"] == {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": "kubelogin",
        "args": EXPECTED_ARGS[mode],
        "env": None,  # no credential is written: kubelogin reads them from the environment
        "installHint": "install kubelogin",
        "provideClusterInfo": False,
    }}
    # Everything else is untouched.
    original = yaml.safe_load(AKS_EXEC_KUBECONFIG)
    assert {k: v for k, v in converted.items() if k != "users"} == {k: v for k, v in original.items() if k != "users"}


def test_no_mode_keeps_the_device_code_login():
    for mode in EXPECTED_ARGS:
        assert "devicecode" not in convert_kubeconfig(AKS_EXEC_KUBECONFIG, mode)


def test_non_kubelogin_users_are_left_alone_and_the_default_hint_is_kubelogins():
    certificate_user = {"name": "admin", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}
    config = yaml.safe_load(AKS_EXEC_KUBECONFIG)
    config["users"][0]["user"]["exec"].pop("installHint")
    config["users"].append(certificate_user)
    converted = yaml.safe_load(convert_kubeconfig(yaml.safe_dump(config), "azurecli"))
    assert converted["users"][1] == certificate_user
    assert converted["users"][0]["user"]["exec"]["installHint"] == INSTALL_HINT


def test_a_kubeconfig_without_a_server_id_is_a_keyed_error():
    broken = AKS_EXEC_KUBECONFIG.replace(f"--server-id, {SERVER_ID}, ", "")
    with pytest.raises(ConfigError) as excinfo:
        convert_kubeconfig(broken, "spn")
    [issue] = excinfo.value.issues
    assert issue.key == "cluster.kubeLogin" and "--server-id" in issue.problem
