"""Run the real program (`__main__.py`) offline under Pulumi's mocks and capture everything it registers.

Used by the tests, `aksinf plan` and the offline policy run: no Pulumi CLI, no
cloud credentials, no Kubernetes API. Mocks only stand in for the providers:
they echo inputs back as outputs and invent, deterministically, the few
outputs Azure would compute (ids, login server, kubelet identity, IPs).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import runpy
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi.runtime
import pulumi.runtime.settings as settings
from pulumi.runtime.mocks import MockMonitor

from contract.loading import read_stack_file
from contract.stack import NAMESPACE as PROJECT
from contract.stack import PROJECT_ROOT

PROGRAM = PROJECT_ROOT / "__main__.py"

SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
TENANT = "11111111-1111-1111-1111-111111111111"

# The input that carries each Azure resource's physical name (everything else: "name").
_NAME_INPUT = {
    "azure-native:resources:ResourceGroup": "resourceGroupName",
    "azure-native:network:VirtualNetwork": "virtualNetworkName",
    "azure-native:network:Subnet": "subnetName",
    "azure-native:network:RouteTable": "routeTableName",
    "azure-native:network:Route": "routeName",
    "azure-native:network:PublicIPAddress": "publicIpAddressName",
    "azure-native:network:FirewallPolicy": "firewallPolicyName",
    "azure-native:network:FirewallPolicyRuleCollectionGroup": "ruleCollectionGroupName",
    "azure-native:network:AzureFirewall": "azureFirewallName",
    "azure-native:network:VirtualNetworkPeering": "virtualNetworkPeeringName",
    "azure-native:network:PrivateEndpoint": "privateEndpointName",
    "azure-native:network:PrivateDnsZoneGroup": "privateDnsZoneGroupName",
    "azure-native:privatedns:PrivateZone": "privateZoneName",
    "azure-native:privatedns:VirtualNetworkLink": "virtualNetworkLinkName",
    "azure-native:managedidentity:UserAssignedIdentity": "resourceName",
    "azure-native:authorization:RoleAssignment": "roleAssignmentName",
    "azure-native:storage:StorageAccount": "accountName",
    "azure-native:storage:BlobContainer": "containerName",
    "azure-native:managedidentity:FederatedIdentityCredential": "federatedIdentityCredentialResourceName",
    "azure-native:containerservice:ManagedCluster": "resourceName",
    "azure-native:containerservice:AgentPool": "agentPoolName",
    "azure-native:containerregistry:Registry": "registryName",
    "azure-native:operationalinsights:Workspace": "workspaceName",
}


def _digest(*parts: Any) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _guid(*parts: Any) -> str:
    h = _digest(*parts)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def unwrap_secrets(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """Strip the engine's secret envelopes; return the plain value and the paths that were secret."""
    if isinstance(value, Mapping):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            inner, paths = unwrap_secrets(value.get("value"), path)
            return inner, [path or "."] + paths
        plain, paths = {}, []
        for key, item in value.items():
            plain[key], sub = unwrap_secrets(item, f"{path}.{key}" if path else key)
            paths += sub
        return plain, paths
    if isinstance(value, list):
        plain, paths = [], []
        for index, item in enumerate(value):
            inner, sub = unwrap_secrets(item, f"{path}[{index}]")
            plain.append(inner)
            paths += sub
        return plain, paths
    return value, []


def normalize_numbers(value: Any) -> Any:
    """Mocks carry every number as a float (protobuf Struct); make whole floats ints again."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: normalize_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalize_numbers(item) for item in value]
    return value


@dataclass
class CapturedResource:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    provider: str
    inputs: dict  # secrets unwrapped, numbers normalised
    raw_inputs: dict  # as the engine saw them (secret envelopes kept)
    outputs: dict
    secret_paths: list[str]
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    protect: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False


@dataclass
class OfflineRun:
    resources: list[CapturedResource]
    outputs: dict[str, Any]
    secret_outputs: set[str]
    error: BaseException | None
    invokes: list[str] = field(default_factory=list)  # provider functions the program called, in order

    def of_type(self, type_: str) -> list[CapturedResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> CapturedResource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one {type_} {name or ''}, found {[r.name for r in found]}")
        return found[0]

    @property
    def custom_resources(self) -> list[CapturedResource]:
        return [r for r in self.resources if r.custom]


_meta = threading.local()


class _CapturingMonitor(MockMonitor):
    """MockResourceArgs lacks urn/parent/options: take them from the RegisterResource request."""

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        _meta.value = {
            "urn": self.make_urn(request.parent, request.type, request.name),
            "parent": request.parent,
            "dependencies": sorted(request.dependencies),
            "property_dependencies": {k: sorted(v.urns) for k, v in sorted(request.propertyDependencies.items())},
            "protect": bool(request.protect),
            "ignore_changes": list(request.ignoreChanges),
            "delete_before_replace": bool(request.deleteBeforeReplace),
        }
        try:
            return super().RegisterResource(request)
        finally:
            _meta.value = None


class _CapturingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[CapturedResource] = []
        self._lock = threading.Lock()
        self.invokes: list[str] = []

    def _invented(self, typ: str, name: str, inputs: dict) -> dict:
        out = dict(inputs)
        if typ.startswith("azure-native:"):
            physical = inputs.get(_NAME_INPUT.get(typ, "name")) or f"{name}-{_digest(name)[:6]}"
            out["name"] = physical
            group = inputs.get("resourceGroupName", "rg")
            provider_path = typ.split(":")[1] + "/" + typ.split(":")[2]
            out["id"] = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{provider_path}/{physical}"
            if typ == "azure-native:resources:ResourceGroup":
                out["id"] = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{physical}"
        if typ == "azure-native:containerregistry:Registry":
            out["loginServer"] = f"{out['name']}.azurecr.io"
        elif typ == "azure-native:containerservice:ManagedCluster":
            out["identityProfile"] = {
                "kubeletidentity": {"objectId": _guid(name, "kubelet"), "clientId": _guid(name, "kubelet-client"), "resourceId": f"{out['id']}-kubelet"}
            }
            out["fqdn"] = f"{inputs.get('dnsPrefix', name)}.hcp.{inputs.get('location', 'region')}.azmk8s.io"
            out["oidcIssuerProfile"] = {"enabled": True, "issuerURL": f"https://oidc.example/{_digest(name)[:12]}/"}
            identity = inputs.get("identity") or {}
            if isinstance(identity.get("userAssignedIdentities"), list):  # input: ids; output: id -> identity
                out["identity"] = {
                    **identity,
                    "userAssignedIdentities": {i: {"principalId": _guid(i), "clientId": _guid(i, "c")} for i in identity["userAssignedIdentities"]},
                }
        elif typ == "azure-native:managedidentity:UserAssignedIdentity":
            out["principalId"] = _guid(name, "principal")
            out["clientId"] = _guid(name, "client")
            out["tenantId"] = TENANT
        elif typ == "azure-native:network:PublicIPAddress":
            out["ipAddress"] = f"20.{int(_digest(name)[:2], 16)}.{int(_digest(name)[2:4], 16)}.{int(_digest(name)[4:6], 16) % 250 + 1}"
        elif typ == "azure-native:network:AzureFirewall":
            configs = []
            for cfg in inputs.get("ipConfigurations", []):
                subnet = self._subnet_prefix(cfg.get("subnet", {}).get("id", ""))
                private = str(ipaddress.ip_network(subnet).network_address + 4) if subnet else "10.0.0.4"
                configs.append({**cfg, "privateIPAddress": private})
            out["ipConfigurations"] = configs
        elif typ == "azure-native:storage:StorageAccount":
            out["primaryEndpoints"] = {"blob": f"https://{out['name']}.blob.core.windows.net/"}
        elif typ == "azure-native:storage:BlobContainer":
            out["id"] = (
                f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.Storage/storageAccounts/"
                f"{inputs.get('accountName')}/blobServices/default/containers/{out['name']}"
            )
        elif typ == "azure-native:operationalinsights:Workspace":
            out["customerId"] = _guid(name, "workspace")
        elif typ == "azure-native:applicationinsights:Component":
            out["instrumentationKey"] = _guid(name, "ikey")
            out["connectionString"] = f"InstrumentationKey={_guid(name, 'ikey')}"
        elif typ == "kubernetes:core/v1:Service" and (inputs.get("spec") or {}).get("type") == "LoadBalancer":
            internal = (inputs.get("metadata") or {}).get("annotations", {}).get("service.beta.kubernetes.io/azure-load-balancer-internal")
            ip = f"10.224.{int(_digest(name)[:2], 16)}.{int(_digest(name)[2:4], 16) % 250 + 4}" if internal else f"20.{int(_digest(name)[:2], 16)}.0.{int(_digest(name)[2:4], 16) % 250 + 1}"
            out["status"] = {"loadBalancer": {"ingress": [{"ip": ip}]}}
        elif typ == "random:index/randomPassword:RandomPassword":
            out["result"] = _digest(name, json.dumps(inputs.get("keepers", {}), sort_keys=True))[: int(inputs.get("length", 32))]
        elif typ == "docker:index/image:Image":
            image = inputs.get("imageName", name)
            out["repoDigest"] = f"{image.split(':')[0]}@sha256:{_digest(image)}"
            out["baseImageName"] = image
        return out

    def _subnet_prefix(self, subnet_id: str) -> str | None:
        with self._lock:
            for resource in self.resources:
                if resource.type == "azure-native:network:Subnet" and resource.outputs.get("id") == subnet_id:
                    return resource.inputs.get("addressPrefix")
        return None

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        plain, secret_paths = unwrap_secrets(dict(args.inputs))
        outputs = self._invented(args.typ, args.name, plain)
        resource_id = outputs.get("id") or f"{args.name}-id"
        meta = getattr(_meta, "value", None) or {}
        captured = CapturedResource(
            type=args.typ,
            name=args.name,
            urn=meta.get("urn", ""),
            parent=meta.get("parent", ""),
            custom=bool(args.custom),
            provider=args.provider or "",
            inputs=normalize_numbers(plain),
            raw_inputs=dict(args.inputs),
            outputs=normalize_numbers(outputs),
            secret_paths=secret_paths,
            dependencies=meta.get("dependencies", []),
            property_dependencies=meta.get("property_dependencies", {}),
            protect=meta.get("protect", False),
            ignore_changes=meta.get("ignore_changes", []),
            delete_before_replace=meta.get("delete_before_replace", False),
        )
        with self._lock:
            self.resources.append(captured)
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        with self._lock:
            self.invokes.append(args.token)
        if args.token == "azure-native:authorization:getClientConfig":
            return {"subscriptionId": SUBSCRIPTION, "tenantId": TENANT, "clientId": _guid("client"), "objectId": _guid("object")}
        if args.token == "azure-native:containerservice:listManagedClusterUserCredentials":
            name = args.args.get("resourceName", "cluster")
            kubeconfig = FAKE_KUBECONFIG.format(name=name)
            return {"kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(kubeconfig.encode()).decode()}]}
        return {}  # a plain dict: ({}, None) crashes the mock monitor


FAKE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{{name: {name}, cluster: {{server: "https://{name}.offline.invalid:443"}}}}]
contexts: [{{name: {name}, context: {{cluster: {name}, user: clusterUser}}}}]
current-context: {name}
users: [{{name: clusterUser, user: {{token: offline-only}}}}]
"""


def _as_config_string(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def run_program(
    stack: str = "dev",
    config: Mapping[str, Any] | None = None,
    *,
    secret_keys: tuple[str, ...] = (),
    program: Path = PROGRAM,
) -> OfflineRun:
    """Run the program once under fresh mocks. `config` (fully namespaced keys) replaces the stack file."""
    values = dict(read_stack_file(stack) if config is None else config)
    for key, value in values.items():
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            raise ValueError(f"{key} is encrypted in the stack file; pass it in `config` for an offline run")
    mocks = _CapturingMocks()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    error: BaseException | None = None
    outputs: dict[str, Any] = {}
    secret_outputs: set[str] = set()
    try:
        pulumi.runtime.set_all_config({k: _as_config_string(v) for k, v in values.items()}, secret_keys=list(secret_keys))
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=_CapturingMonitor(mocks))

        @pulumi.runtime.test
        def _run():
            runpy.run_path(str(program), run_name="__main__")

        try:
            _run()
        except BaseException as exc:  # noqa: BLE001 - the caller inspects the failure
            error = exc
        root = settings.get_root_resource()
        if error is None and root is not None:

            async def _resolve() -> None:
                for key, value in sorted(root.outputs.items()):
                    out = pulumi.Output.from_input(value)
                    outputs[key] = await out.future()
                    if await out.is_secret():
                        secret_outputs.add(key)

            loop.run_until_complete(_resolve())
    finally:
        settings.reset_options()
        pulumi.runtime.set_all_config({})
        loop.close()
        asyncio.set_event_loop(None)
    resources = sorted(mocks.resources, key=lambda r: (r.urn, r.type, r.name))
    return OfflineRun(resources, normalize_numbers(outputs), secret_outputs, error, list(mocks.invokes))
