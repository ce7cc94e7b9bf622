"""Push credentials for the stack's ACR without its admin user: an Entra token exchanged for an ACR refresh token.

What `az acr login --expose-token` does (https://learn.microsoft.com/azure/container-registry/container-registry-authentication,
protocol: https://github.com/Azure/acr/blob/main/docs/AAD-OAuth.md): get an Entra access token for Azure Resource
Manager (azure-identity's `DefaultAzureCredential`: the `az login` session, a workload identity, environment
credentials, …), POST it form-encoded to `https://<registry>/oauth2/exchange` with `grant_type=access_token`,
`service=<registry>` and `tenant`, and log in to the registry as `ACR_USERNAME` with the returned
`refresh_token` as password. Pushing then needs AcrPush (or a higher role) on the registry.

Promises: the endpoint is HTTPS (plain HTTP only on a loopback address, for a local fake); no token ever appears
in an error message or a log line; a 401/403 says the identity lacks AcrPush and how to grant it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

import httpx

# The user name ACR expects with a refresh token (the documented all-zero GUID).
ACR_USERNAME = "00000000-0000-0000-0000-000000000000"
# The exchange accepts an Azure Resource Manager token (what `az acr login` sends).
ARM_SCOPE = "https://management.azure.com/.default"
EXCHANGE_TIMEOUT_S = 30.0


class AcrLoginError(RuntimeError):
    """The exchange failed; the message names the registry and the fix, never a token."""


def exchange_endpoint(login_server: str) -> str:
    return f"https://{login_server}/oauth2/exchange"


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def exchange_for_refresh_token(endpoint: str, login_server: str, tenant: str, access_token: str) -> str:
    """POST the Entra `access_token` to the registry's exchange `endpoint`; the ACR refresh token."""
    url = urlparse(endpoint)
    if not (url.scheme == "https" or (url.scheme == "http" and _loopback(url.hostname))):
        raise AcrLoginError(f"refusing to send an Entra token to {url.scheme}://{url.hostname}: the exchange endpoint must be https")
    form = {"grant_type": "access_token", "service": login_server, "tenant": tenant, "access_token": access_token}
    try:
        response = httpx.post(endpoint, data=form, timeout=EXCHANGE_TIMEOUT_S)
    except httpx.HTTPError as error:
        raise AcrLoginError(f"could not reach {login_server} to exchange an Entra token: {type(error).__name__}") from None
    if response.status_code in (401, 403):
        raise AcrLoginError(
            f"{login_server} refused the deploying identity's Entra token (HTTP {response.status_code}): the identity "
            "needs AcrPush (or a higher role) on the registry. Grant it: az role assignment create --role AcrPush "
            f"--assignee <deploying identity's object id> --scope $(az acr show -n {login_server.split('.')[0]} --query id -o tsv)"
        )
    if response.status_code != 200:
        raise AcrLoginError(f"{login_server} answered the token exchange with HTTP {response.status_code}")
    try:
        refresh_token = response.json().get("refresh_token")
    except ValueError:
        refresh_token = None
    if not isinstance(refresh_token, str) or not refresh_token:
        raise AcrLoginError(f"{login_server} answered the token exchange without a refresh_token")
    return refresh_token


def push_password(login_server: str, tenant: str) -> str:
    """The registry password for `ACR_USERNAME`: this process's Entra identity, exchanged at the registry."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    try:
        access_token = DefaultAzureCredential().get_token(ARM_SCOPE).token
    except ClientAuthenticationError:
        raise AcrLoginError(
            f"no Entra identity to push to {login_server}: sign in (az login, or azure/login with OIDC in CI) or set a workload identity"
        ) from None
    return exchange_for_refresh_token(exchange_endpoint(login_server), login_server, tenant, access_token)
