"""The cluster's kubeconfig, rewritten for a non-interactive sign-in: what `kubelogin convert-kubeconfig -l <mode>` does.

An Entra-only cluster's `listClusterUserCredential(format=exec)` kubeconfig runs
`kubelogin get-token --login devicecode ...`, which waits for a person to type a code
(https://learn.microsoft.com/azure/aks/kubelogin-authentication). `convert_kubeconfig` rewrites every user whose
exec plugin is kubelogin exactly as kubelogin's converter does (Azure/kubelogin, pkg/internal/converter/convert.go)
when it is given only `-l <mode>`: `get-token --login <mode> --server-id <from the input>` plus, per mode, the
arguments the converter keeps from the input (`--client-id`/`--tenant-id`/`--environment` for spn and
interactive, `--legacy` for spn). Credentials are never written into the kubeconfig: kubelogin reads them from
the environment at sign-in (spn: AAD_SERVICE_PRINCIPAL_CLIENT_ID/…_SECRET or AZURE_CLIENT_ID/AZURE_CLIENT_SECRET;
workloadIdentity: AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE; azurecli: the `az login` session;
https://azure.github.io/kubelogin/concepts/login-modes.html). Users that are not kubelogin exec plugins (a
client certificate, a token) are left as they are, as kubelogin leaves them. Pure: text in, text out.
"""

from __future__ import annotations

import yaml

from contract.errors import ConfigError, ConfigIssue
from contract.stack import KubeLogin

# `cluster.kubeLogin` value -> kubelogin's `--login` value.
LOGIN_MODES: dict[str, str] = {
    "azurecli": "azurecli",
    "workloadIdentity": "workloadidentity",
    "spn": "spn",
    "interactive": "interactive",
}
EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"
INSTALL_HINT = """
kubelogin is not installed which is required to connect to AAD enabled cluster.

To learn more, please go to https://azure.github.io/kubelogin/
"""
# Arguments the converter carries over from the input, per mode (flags given on its command line aside).
_KEPT = {
    "azurecli": (),
    "workloadidentity": (),
    "spn": ("--client-id", "--tenant-id", "--environment"),
    "interactive": ("--client-id", "--tenant-id", "--environment", "--redirect-url", "--login-hint"),
}
_REQUIRED = {"spn": ("--client-id", "--tenant-id"), "interactive": ("--client-id", "--tenant-id")}


def _arg(args: list[str], name: str) -> str | None:
    """The value after `name` in `args` (kubelogin's getExecArg)."""
    for i, arg in enumerate(args[:-1]):
        if arg == name:
            return args[i + 1]
    return None


def kubelogin_exec(args: list[str], mode: KubeLogin, install_hint: str | None = None) -> dict:
    """The exec block kubelogin writes for `-l <mode>`, from the input exec block's arguments."""
    login = LOGIN_MODES[mode]
    server_id = _arg(args, "--server-id")
    missing = [name for name in ("--server-id", *_REQUIRED.get(login, ())) if not _arg(args, name)]
    if missing:
        raise ConfigError([ConfigIssue("cluster.kubeLogin", mode, f"the cluster's kubeconfig has no {', '.join(missing)} for kubelogin")])
    converted = ["get-token", "--login", login, "--server-id", server_id]
    cache_dir = _arg(args, "--cache-dir") or _arg(args, "--token-cache-dir")
    if cache_dir:
        converted += ["--cache-dir", cache_dir]
    for name in _KEPT[login]:
        value = _arg(args, name)
        if value:
            converted += [name, value]
    if login == "spn" and "--legacy" in args:
        converted.append("--legacy")
    return {
        "apiVersion": EXEC_API_VERSION,
        "command": "kubelogin",
        "args": converted,
        "env": None,
        "installHint": install_hint or INSTALL_HINT,
        "provideClusterInfo": False,
    }


def _is_kubelogin(user: dict) -> bool:
    exec_block = user.get("exec") or {}
    return "kubelogin" in str(exec_block.get("command", "")).lower()


def convert_kubeconfig(kubeconfig: str, mode: KubeLogin) -> str:
    """`kubelogin convert-kubeconfig -l <mode>` on the text of a kubeconfig."""
    config = yaml.safe_load(kubeconfig) or {}
    for entry in config.get("users") or []:
        user = entry.get("user") or {}
        if _is_kubelogin(user):
            exec_block = user["exec"]
            user["exec"] = kubelogin_exec(list(exec_block.get("args") or []), mode, exec_block.get("installHint"))
            user.pop("auth-provider", None)
    return yaml.safe_dump(config, sort_keys=False)
