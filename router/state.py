"""The router-owned live state: each endpoint's applied traffic split and rollout, and each service's
autoscaler window, kept where the next leader (and every router replica) reads them.

Why the router owns it: a canary rollback must take effect without a `pulumi up`, and the next
`pulumi up` must not undo it; a new leader must continue the scale-down window the previous one
kept (issue #14: a leader change never drops replicas early). The leader writes, every replica reads
each round and renders the live split (`live_endpoint_routes`).

Where: in the cluster the ConfigMap `aks-inference-router-state` in the router's namespace, key
`state.json` (router/kubernetes.py: `ConfigMapStateStore`); in local mode the file
`<run dir>/router-state.json` (`FileStateStore`). The document:

  {"traffic": {"<namespace>/<endpoint>": {"revision": str, "split": {"<version>": percent, ...},
               "phase": "progressing" | "completed" | "rolled_back", "step": int,
               "windowStartedUnix": float, "cause": str}},
   "autoscaler": {"<namespace>/<service>": [[unix time, replicas], ...]}}

Times are wall-clock (Unix) seconds: another process on another node reads them. `revision` is the
hash of the endpoint's versions and rollout configuration (router/discovery.py): an entry of another
revision is stale (the configuration changed) and the configured split applies again.

Reading never raises on what the document holds: a document that is not JSON or not this shape reads
as the empty state, an entry that is not well formed is dropped alone, each with the reason logged
(one bad endpoint never affects another). Writing happens only when the text changes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from router.canary import RolloutState
from router.spec import EndpointRoute, with_live_split

if TYPE_CHECKING:
    from router.discovery import DiscoveredEndpoint

log = logging.getLogger(__name__)

STATE_CONFIGMAP = "aks-inference-router-state"
STATE_KEY = "state.json"
STATE_FILE = "router-state.json"  # in local mode's run dir
PHASES = ("progressing", "completed", "rolled_back")
# Autoscaler windows are persisted with times rounded UP to this grain: a peak then expires at most this
# much later than in the leader's own window, never earlier, and a steady window changes the document (one
# ConfigMap patch) at most once per grain instead of every tick.
WINDOW_GRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class TrafficEntry:
    """One endpoint's live split and the rollout state that decided it."""

    revision: str
    split: tuple[tuple[str, int], ...]  # (version, percent of client requests)
    phase: str
    step: int
    window_started_unix: float
    cause: str = ""

    @classmethod
    def of(cls, state: RolloutState, split: Iterable[tuple[str, int]]) -> TrafficEntry:
        return cls(state.revision, tuple(split), state.phase, state.step, state.window_started, state.cause)

    def rollout_state(self) -> RolloutState:
        return RolloutState(self.revision, self.phase, self.step, self.window_started_unix, self.cause)  # type: ignore[arg-type]


Window = tuple[tuple[float, int], ...]  # (unix time, replicas), oldest first


@dataclass(frozen=True)
class RouterState:
    traffic: Mapping[str, TrafficEntry] = field(default_factory=dict)  # "<namespace>/<endpoint>" -> entry
    autoscaler: Mapping[str, Window] = field(default_factory=dict)  # "<namespace>/<service>" -> window


class StateStore(Protocol):
    def load(self) -> RouterState:
        """The state as last saved (the empty state when there is none); never raises."""
        ...

    def save(self, state: RouterState) -> None:
        """Persist `state` (nothing is written when it did not change); StateNotSaved when it cannot."""
        ...


class StateNotSaved(Exception):
    """The store could not be written; the caller logs it and the next save retries."""


def persisted_window(window: Iterable[tuple[float, int]], grain: float = WINDOW_GRAIN_SECONDS) -> Window:
    """A window as stored (pure): times rounded up to `grain`, entries that can never be the highest
    again (a later entry is at least as high) left out. The highest value of what remains, over any
    horizon, is never below the original's: a scale-down is never earlier for it."""
    kept: list[tuple[float, int]] = []
    for time, replicas in sorted((math.ceil(t / grain) * grain, d) for t, d in window):
        while kept and kept[-1][1] <= replicas:
            kept.pop()
        kept.append((time, replicas))
    return tuple(kept)


def state_document(state: RouterState) -> dict:
    return {
        "traffic": {
            key: {"revision": e.revision, "split": dict(e.split), "phase": e.phase, "step": e.step,
                  "windowStartedUnix": e.window_started_unix, "cause": e.cause}
            for key, e in sorted(state.traffic.items())
        },
        "autoscaler": {key: [[t, d] for t, d in window] for key, window in sorted(state.autoscaler.items()) if window},
    }


def dump_state(state: RouterState) -> str:
    """The stored text: deterministic, so an unchanged state gives the same text."""
    return json.dumps(state_document(state), sort_keys=True, separators=(",", ":"))


def parse_state(text: str | None, source: str) -> RouterState:
    """The state `text` holds; the empty state for none. What cannot be read is logged (naming `source`)
    and left out: the whole document when it is not one, else the one entry."""
    if not text:
        return RouterState()
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        log.error("%s: the router state is not JSON (%s); starting from the configured splits and the running replicas", source, error)
        return RouterState()
    if not isinstance(document, dict):
        log.error("%s: the router state is not a JSON object; starting from the configured splits and the running replicas", source)
        return RouterState()
    traffic, autoscaler = {}, {}
    for key, entry in _mapping(document.get("traffic"), source, "traffic").items():
        try:
            traffic[key] = _traffic_entry(entry)
        except (ValueError, TypeError, KeyError) as error:
            log.error("%s: traffic entry %r dropped (%s); the endpoint's configured split applies", source, key, error)
    for key, window in _mapping(document.get("autoscaler"), source, "autoscaler").items():
        try:
            autoscaler[key] = _window(window)
        except (ValueError, TypeError) as error:
            log.error("%s: autoscaler window %r dropped (%s); it starts from the running replicas", source, key, error)
    return RouterState(traffic, autoscaler)


def _mapping(value: object, source: str, section: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        log.error("%s: the router state's %r is not an object; it is ignored", source, section)
        return {}
    return value


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r:.40}")
    return float(value)


def _traffic_entry(entry: dict) -> TrafficEntry:
    split = entry["split"]
    if not isinstance(split, dict) or not all(isinstance(v, str) and isinstance(p, int) and not isinstance(p, bool) for v, p in split.items()):
        raise ValueError("split must be an object of version -> whole percent")
    if entry["phase"] not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}")
    step = entry["step"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError("step must be a whole number, 0 or more")
    if not isinstance(entry["revision"], str) or not isinstance(entry.get("cause", ""), str):
        raise TypeError("revision and cause must be strings")
    return TrafficEntry(entry["revision"], tuple(split.items()), entry["phase"], step,
                        _number(entry["windowStartedUnix"], "windowStartedUnix"), entry.get("cause", ""))


def _window(window: object) -> Window:
    if not isinstance(window, list) or not all(isinstance(pair, list) and len(pair) == 2 for pair in window):
        raise ValueError("must be a list of [unix time, replicas]")
    pairs = []
    for time, replicas in window:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ValueError(f"replicas must be a whole number, got {replicas!r:.40}")
        pairs.append((_number(time, "time"), replicas))
    return tuple(sorted(pairs))


class FileStateStore:
    """StateStore in one file (local mode): written to a temporary file and renamed over, so a reader (or
    a crash) never sees half a document."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._text: str | None = None  # as last read or written

    def load(self) -> RouterState:
        try:
            self._text = self.path.read_text()
        except FileNotFoundError:
            self._text = None
        except (OSError, UnicodeDecodeError) as error:
            log.error("%s: cannot read the router state (%s)", self.path, error)
            self._text = None
        return parse_state(self._text, str(self.path))

    def save(self, state: RouterState) -> None:
        text = dump_state(state)
        if text == self._text:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile("w", dir=self.path.parent, prefix=f".{self.path.name}.", delete=False) as handle:
                handle.write(text)
            os.replace(handle.name, self.path)
        except OSError as error:
            raise StateNotSaved(f"{self.path}: {error}") from error
        self._text = text


def stored_split(endpoint: DiscoveredEndpoint, state: RouterState) -> tuple[tuple[str, int], ...] | None:
    """The live split the store holds for `endpoint`: only for an endpoint with a rollout, and only an
    entry of its current revision (an entry of another one predates a configuration change)."""
    entry = state.traffic.get(endpoint_key(endpoint.route))
    if endpoint.rollout is None or entry is None or entry.revision != endpoint.revision:
        return None
    return entry.split


def live_endpoint_routes(endpoints: Iterable[DiscoveredEndpoint], state: RouterState) -> list[EndpointRoute]:
    """Each endpoint's route with the live split applied (`spec.with_live_split`); the configured one
    where the store holds none for it. A live split the route cannot take is logged and not applied."""
    routes = []
    for endpoint in endpoints:
        split = stored_split(endpoint, state)
        if split is None:
            routes.append(endpoint.route)
            continue
        route, reason = with_live_split(endpoint.route, dict(split))
        if reason:
            log.warning("endpoint %s: the live split %s is not applied (%s); the configured one serves", endpoint.source, dict(split), reason)
        routes.append(route)
    return routes


def live_splits(state: RouterState) -> dict[str, tuple[tuple[str, int], ...]]:
    """Endpoint key -> its live split: what routes render (a phase change alone renders nothing new)."""
    return {key: entry.split for key, entry in state.traffic.items()}


def endpoint_key(route: EndpointRoute) -> str:
    return f"{route.namespace}/{route.name}"
