"""The env pool with Ray actors as its workers, so env workers can run on any machine of a Ray cluster.

Why: an ALFWorld engine keeps one core busy, so one machine's cores cap how many games advance at
once. `RayEnvPool` has EnvPool's interface and semantics (slots, batching, warm resets, failures: see
slots.py) and its actors run the same `WorkerState` as worker processes, so rollouts do not change and
play the same episodes. Each actor asks Ray for one CPU: Ray spreads them over the cluster's machines
and never puts more engines on a machine than it has cores.

Connecting: `address` (the CLI's --ray-address, or $RAY_ADDRESS) names a running cluster, as `ray start
--head` prints it (host:port); with neither, a local Ray instance is started. The connection is kept
for the life of the process (a run opens one pool per stage; Ray disconnects at exit).

Failures, as with processes: an actor that dies (its process crashed or was killed, or its machine
left the cluster) or overruns its deadline is killed and replaced, and its episodes fail. Unlike a
local process, a death between calls is only seen by the next call that uses that actor (checking
would cost a round trip per call). Commands and replies travel pickled, as to and from a process, so
a result that cannot be pickled fails its slots, not the actor.

Machines: every machine needs agentprm with the ALFWorld engine (scripts/setup.sh) and the games. A
game path from the driver that does not exist on an actor's machine is looked up by the game's id under
that machine's $ALFWORLD_DATA, so the games need not sit at the same path everywhere.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import time
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

from agentprm.envs.games import GAME_FILE, SPLITS, split_dir
from agentprm.envs.pool import SHUTDOWN_GRACE_S, encode_reply
from agentprm.envs.protocol import TextEnv
from agentprm.envs.slots import Reply, SlotPool
from agentprm.envs.worker import Close, Command, EnvFactory, EpisodeFailure, EpisodeSpec, WorkerState, make_alfworld_env
from agentprm.errors import ConfigError

LOCAL = "local"
"""ray.init's address for "start a new local instance" (never join one found on this machine)."""
CONNECT_TIMEOUT_S = 10.0
START_TIMEOUT_S = 60.0
"""Least time the actors get to start (see RayEnvPool), whatever the per-op budget."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError("the ray env backend needs Ray: pip install 'agentprm[ray]' (or run scripts/setup.sh)") from e
    return ray


def connect(address: str | None = None) -> None:
    """Connect this process to Ray, once: `address`, else $RAY_ADDRESS, else a new local instance."""
    ray = _ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or LOCAL
    if address == LOCAL:
        ray.init(address=LOCAL, logging_level=logging.WARNING, include_dashboard=False)
        return
    _check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise ConfigError(f"cannot join the Ray cluster at {address!r}: {_summary(e)}") from e


def _check_reachable(address: str) -> None:
    """Fail fast on a wrong address: Ray itself keeps retrying an unreachable one for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray resolves them
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(f"no Ray cluster answers at {address!r} ({e.strerror or e}): start one there with "
                          "`ray start --head`, or fix --ray-address / RAY_ADDRESS (README: Scaling out)") from e


@dataclass(frozen=True)
class _OnThisMachine:
    """An env factory that first finds the spec's game file on the actor's machine (see module doc)."""

    factory: EnvFactory

    def __call__(self, spec: EpisodeSpec) -> TextEnv:
        return self.factory(local_game(spec))


def local_game(spec: EpisodeSpec) -> EpisodeSpec:
    """`spec` with its game file as found on this machine: its own path if that exists, else the same
    game id under $ALFWORLD_DATA (left as it is if neither exists, so the engine names the missing file)."""
    game = spec.game
    parts = game.game_id.split("/")
    if not game.path or os.path.exists(game.path) or len(parts) != 3 or parts[0] not in SPLITS:
        return spec
    here = split_dir(parts[0]) / parts[1] / parts[2] / GAME_FILE
    return replace(spec, game=replace(game, path=str(here))) if here.is_file() else spec


class _EnvActor:
    """One env worker as a Ray actor: a pickled command in, a pickled reply (or None) out."""

    def __init__(self, factory: EnvFactory):
        self.state = WorkerState(_OnThisMachine(factory))

    def pid(self) -> int:
        return os.getpid()

    def run(self, payload: bytes) -> bytes | None:
        reply = pickle.loads(payload).run(self.state)
        return None if reply is None else encode_reply(reply)


class RayEnvPool(SlotPool):
    """Episodes, named by caller-chosen integer slots, spread over `num_workers` Ray actors.

    num_workers=None: one per CPU of the cluster. `env_factory` is shipped to the actors, so it must be
    importable there (module-level, in an installed package). A worker gets `timeout_s` per op of its
    sub-batch before it is declared hung. Starting the actors gets `start_timeout_s` in all (default: at
    least `START_TIMEOUT_S`), and so does a replacement actor before its first op: an actor's start is a new
    Python process importing the engine, which on a busy machine takes longer than a short op budget
    allows, and is no sign of a hang.
    """

    def __init__(
        self,
        num_workers: int | None = None,
        env_factory: EnvFactory = make_alfworld_env,
        timeout_s: float = 120.0,
        address: str | None = None,
        start_timeout_s: float | None = None,
    ):
        ray = _ray()
        connect(address)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        n = cpus if num_workers is None else num_workers
        if n < 1:
            raise ConfigError(f"a Ray env pool needs at least 1 worker, got {n}")
        if n > cpus:
            raise ConfigError(f"{n} env workers need one CPU each and the Ray cluster has {cpus}: lower --workers "
                              "(data.workers), or add machines (`ray start --address=...`)")
        super().__init__(n, timeout_s)
        self.env_factory = env_factory
        self._actor_class = ray.remote(num_cpus=1, max_restarts=0)(_EnvActor)
        self._actors: list[Any] = []
        self.start_timeout_s = max(timeout_s, START_TIMEOUT_S) if start_timeout_s is None else start_timeout_s
        try:
            self._actors = [self._actor_class.remote(env_factory) for _ in range(n)]
            self._await_start(self._actors)
        except ray.exceptions.GetTimeoutError as e:
            self._shutdown(graceful=False)
            raise ConfigError(f"{n} env workers did not start on Ray within {self.start_timeout_s:g}s "
                              "(cluster busy?)") from e
        except BaseException:
            self._shutdown(graceful=False)
            raise

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the actors, each on its own machine; for monitoring and tests."""
        return _ray().get([a.pid.remote() for a in self._actors], timeout=self.timeout_s)

    # -- talking to actors

    def _reap(self) -> None:
        """Nothing to do: a dead actor is found by the next call that uses it (see the module doc)."""

    def _encode(self, command: Command) -> Any:
        return pickle.dumps(command)

    def _exchange(self, payloads: dict[int, Any], budgets: dict[int, float]) -> dict[int, Reply]:
        ray = _ray()
        pending = {self._actors[w].run.remote(payload): w for w, payload in payloads.items()}
        start = time.monotonic()
        replies: dict[int, Reply] = {}
        while pending:
            elapsed = time.monotonic() - start
            for ref, w in list(pending.items()):
                if elapsed >= budgets[w]:
                    del pending[ref]
                    replies[w] = self._replace(w, f"worker {w} timed out after {budgets[w]:g}s")
            if pending:
                timeout = min(budgets[w] for w in pending.values()) - elapsed
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=max(timeout, 0.0))
                for ref in ready:
                    w = pending.pop(ref)
                    replies[w] = self._receive(w, ref)
        return replies

    def _receive(self, w: int, ref: Any) -> Reply:
        ray = _ray()
        try:
            return pickle.loads(ray.get(ref))
        except ray.exceptions.RayTaskError as e:  # run() itself raised (not an env: those are caught there)
            return EpisodeFailure(f"worker {w} failed: {_summary(e)}", str(e))
        except ray.exceptions.RayError as e:  # the actor is dead or unreachable
            return self._replace(w, f"worker {w} crashed ({type(e).__name__})", str(e))

    def _post(self, w: int, command: Command) -> None:
        self._actors[w].run.remote(pickle.dumps(command))

    def _restart(self, w: int) -> None:
        with suppress(Exception):  # already dead is fine
            _ray().kill(self._actors[w], no_restart=True)
        self._actors[w] = self._actor_class.remote(self.env_factory)
        with suppress(Exception):  # up before its first op is timed; one that never starts times out there
            self._await_start([self._actors[w]])

    def _await_start(self, actors: list[Any]) -> None:
        """Block until every actor is up and placed, or raise GetTimeoutError after `start_timeout_s`."""
        _ray().get([a.pid.remote() for a in actors], timeout=self.start_timeout_s)

    def _shutdown(self, graceful: bool) -> None:
        if self._closed:
            return
        self._closed = True
        ray = _ray()
        if graceful and self._actors:
            closing = [a.run.remote(pickle.dumps(Close())) for a in self._actors]
            with suppress(Exception):
                ray.wait(closing, num_returns=len(closing), timeout=SHUTDOWN_GRACE_S)
        for actor in self._actors:
            with suppress(Exception):
                ray.kill(actor, no_restart=True)


def _summary(error: BaseException) -> str:
    """The last line of a remote traceback: the exception and its message."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__
