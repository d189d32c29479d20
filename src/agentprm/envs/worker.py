"""What runs inside an env worker, whatever starts it (a process of `EnvPool`, an actor of `RayEnvPool`).

A worker hosts the envs of the episodes placed on it, by slot, and answers *commands*: one command
object per call carries the worker's whole sub-batch, and its reply maps each slot to an Observation,
a StepResult or an EpisodeFailure. An exception inside env.reset/step fails that episode only.

Warm resets: when an episode ends, its env is kept idle (the IDLE_ENVS_KEPT most recently released,
by game, least recently used closed first), and a later episode of the same game on this worker resets
that env in place instead of building the game again: ~0.02 s against ~0.3-1.6 s (measured on the
project's 2-core machine). A loaded game holds ~6.5 MB, so the bound keeps a worker's memory flat.
"""

from __future__ import annotations

import traceback
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, Protocol

from agentprm.envs.alfworld import DEFAULT_MAX_STEPS, ALFWorldEnv
from agentprm.envs.games import GameSpec
from agentprm.envs.protocol import Observation, StepResult, TextEnv

IDLE_ENVS_KEPT = 8
"""Envs of finished episodes a worker keeps, by game, for warm resets (repeats of a game, Best-of-N,
reset-distribution starts, retries)."""


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything a worker needs to (re)create and reset one episode; must pickle."""

    game: GameSpec
    prefix: tuple[str, ...] = ()
    """Actions replayed by reset before the agent takes over (see protocol.py)."""
    max_steps: int = DEFAULT_MAX_STEPS
    expert: str | None = None
    """An expert to run beside the game ("handcoded" or "planner"): its next action is in the info."""

    @property
    def env_key(self) -> EpisodeSpec:
        """What an env is built for; episodes with the same key can reuse one env (warm reset)."""
        return replace(self, prefix=())


@dataclass(frozen=True)
class EpisodeFailure:
    """Stands in for an Observation/StepResult when an episode could not be served."""

    error: str
    """One line: "worker 1 crashed (exit code -9)", "worker 0 timed out after 60s", or the exception."""
    traceback: str = ""


EnvFactory = Callable[[EpisodeSpec], TextEnv]
Result = Any  # Observation | StepResult | EpisodeFailure, as answered by a worker


def make_alfworld_env(spec: EpisodeSpec) -> TextEnv:
    """The default factory: one ALFWorld game. Module-level so workers can unpickle it."""
    return ALFWorldEnv(spec.game, spec.max_steps, spec.expert)


class WorkerState:
    """The envs one worker hosts, by slot, plus a few idle ones by game for warm resets. Also serves
    in-process (num_workers=0) pools."""

    def __init__(self, factory: EnvFactory):
        self.factory = factory
        self.envs: dict[int, TextEnv] = {}
        self.specs: dict[int, EpisodeSpec] = {}
        self.idle: OrderedDict[EpisodeSpec, TextEnv] = OrderedDict()

    def reset(self, slot: int, spec: EpisodeSpec) -> Observation:
        old = self.specs.get(slot)
        if old is None or old.env_key != spec.env_key:
            self.release(slot)
            self.envs[slot] = self.idle.pop(spec.env_key, None) or self.factory(spec)
        self.specs[slot] = spec
        try:
            return self.envs[slot].reset(spec.prefix)
        except Exception:  # a half-reset env must not be stepped or reused: drop it, so steps fail clearly
            with suppress(Exception):
                self.release(slot, keep=False)
            raise

    def step(self, slot: int, action: str) -> StepResult:
        if slot not in self.envs:
            raise KeyError(f"slot {slot} has no env on this worker: its reset failed")
        return self.envs[slot].step(action)

    def release(self, slot: int, keep: bool = True) -> None:
        """Forget a slot; its env joins the idle ones (the oldest idle env is closed) or is closed."""
        spec = self.specs.pop(slot, None)
        env = self.envs.pop(slot, None)
        if env is None:
            return
        if not keep or spec is None:
            env.close()
            return
        self.idle.pop(spec.env_key, None)
        self.idle[spec.env_key] = env
        while len(self.idle) > IDLE_ENVS_KEPT:
            self.idle.popitem(last=False)[1].close()

    def release_all(self) -> None:
        for slot in list(self.envs):
            with suppress(Exception):  # a failing close must not stop the others from closing
                self.release(slot, keep=False)
        while self.idle:
            with suppress(Exception):
                self.idle.popitem()[1].close()


def guarded(fn: Callable[..., Result], *args: Any) -> Result:
    """Run one env op; an exception fails that episode only."""
    try:
        return fn(*args)
    except Exception as e:
        return EpisodeFailure(f"{type(e).__name__}: {e}".splitlines()[0], traceback.format_exc())


class Command(Protocol):
    """A message to a worker. `run` returns the reply, or None for commands the pool doesn't await."""

    def run(self, state: WorkerState) -> dict[int, Result] | None: ...


@dataclass(frozen=True)
class Reset:
    items: tuple[tuple[int, EpisodeSpec], ...]

    def run(self, state: WorkerState) -> dict[int, Result]:
        return {slot: guarded(state.reset, slot, spec) for slot, spec in self.items}


@dataclass(frozen=True)
class Step:
    items: tuple[tuple[int, str], ...]

    def run(self, state: WorkerState) -> dict[int, Result]:
        return {slot: guarded(state.step, slot, action) for slot, action in self.items}


@dataclass(frozen=True)
class Release:
    slots: tuple[int, ...]

    def run(self, state: WorkerState) -> None:
        for slot in self.slots:
            with suppress(Exception):  # the episode is over either way
                state.release(slot)


@dataclass(frozen=True)
class Close:
    def run(self, state: WorkerState) -> None:
        state.release_all()
