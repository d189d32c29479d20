"""Episodes by slot over N workers: the bookkeeping every env pool shares, whatever runs its workers.

The caller names episodes by integer *slots* of its own choosing. A batched call groups its items by
the worker hosting each slot and hands every worker its whole sub-batch as ONE command; the workers
run their sub-batches in parallel and answer with one reply each. A slot stays on its worker until
released. Subclasses only say how commands reach workers and how a worker is (re)started
(`EnvPool`: processes on this machine; `RayEnvPool`: Ray actors anywhere in a cluster).

Where a new episode starts: on a worker that holds its game loaded but idle, so its reset is warm
(see worker.py), unless that worker already hosts more than WARM_SLACK episodes beyond the
least-loaded one; else on the least-loaded worker. Which games each worker holds idle is mirrored here
from the commands sent to it (a worker runs its commands in order), so no reply is needed for it. The
mirror is only a hint: a wrong guess costs one cold reset, never a wrong episode.

Env failures never escape as exceptions and never vanish (STYLE.md, rule 4):
- an exception inside env.reset/step becomes an `EpisodeFailure` for that slot (with traceback);
  the worker and its other episodes go on;
- a worker that dies, or that does not answer within `timeout_s` per op of its sub-batch, is killed
  and replaced; every item it was serving fails with "worker k crashed/timed out", and every slot
  it hosted answers later calls with "episode lost with worker k" until it is reset or released.
Every wait has a deadline, as in Gymnasium's AsyncVectorEnv: a hung engine cannot hang the run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from agentprm.envs.protocol import Observation, StepResult
from agentprm.envs.worker import (
    IDLE_ENVS_KEPT,
    Command,
    EpisodeFailure,
    EpisodeSpec,
    Release,
    Reset,
    Result,
    Step,
)

WARM_SLACK = 2
"""Extra episodes a worker may host beyond the least-loaded one and still get a game it holds idle:
an extra episode costs its worker one more step per turn (~5-50 ms), a cold reset ~0.3-1.6 s once."""

P = TypeVar("P", bound="SlotPool")
Reply = dict[int, Result] | EpisodeFailure
"""A worker's answer to a command: results by slot, or one failure for all of them (crash, timeout)."""


class _IdleGames:
    """The env keys one worker keeps idle, least recently released first: a mirror of WorkerState.idle."""

    def __init__(self) -> None:
        self.keys: OrderedDict[EpisodeSpec, None] = OrderedDict()

    def put(self, key: EpisodeSpec) -> None:
        self.keys.pop(key, None)
        self.keys[key] = None
        while len(self.keys) > IDLE_ENVS_KEPT:
            self.keys.popitem(last=False)

    def take(self, key: EpisodeSpec) -> None:
        self.keys.pop(key, None)

    def __contains__(self, key: EpisodeSpec) -> bool:
        return key in self.keys


class SlotPool(ABC):
    """Episodes named by caller-chosen integer slots, spread over `num_workers` workers (0: one
    in-process worker, where the subclass supports it). A worker gets `timeout_s` per op of its
    sub-batch before it is declared hung."""

    def __init__(self, num_workers: int, timeout_s: float):
        if num_workers < 0 or timeout_s <= 0:
            raise ValueError(f"need num_workers >= 0 and timeout_s > 0, got {num_workers}, {timeout_s}")
        self.num_workers = num_workers
        self.timeout_s = timeout_s
        hosts = max(num_workers, 1)  # an in-process pool is one worker
        self._load: list[set[int]] = [set() for _ in range(hosts)]  # the slots each worker hosts
        self._idle = [_IdleGames() for _ in range(hosts)]
        self._where: dict[int, int] = {}
        self._keys: dict[int, EpisodeSpec] = {}  # the env key each live slot's env was built for
        self._lost: dict[int, str] = {}
        self._restarts = 0
        self._closed = False

    # -- public API

    def reset(self, items: Sequence[tuple[int, EpisodeSpec]]) -> dict[int, Observation | EpisodeFailure]:
        """(Re)start an episode in each slot; a slot already in use keeps its worker (and warm env)."""
        self._check_call(slot for slot, _ in items)
        batches: dict[int, list[tuple[int, EpisodeSpec]]] = defaultdict(list)
        for slot, spec in items:
            self._lost.pop(slot, None)
            batches[self._place(slot, spec.env_key)].append((slot, spec))
        answers = self._run({w: Reset(tuple(batch)) for w, batch in batches.items()})
        for slot, _ in items:
            if isinstance(answers[slot], EpisodeFailure):
                self._keys.pop(slot, None)  # the worker dropped that env
        return {slot: answers[slot] for slot, _ in items}

    def step(self, items: Sequence[tuple[int, str]]) -> dict[int, StepResult | EpisodeFailure]:
        """Advance each slot by one action. Slots lost with a worker answer EpisodeFailure."""
        self._check_call(slot for slot, _ in items)
        answers: dict[int, Result] = {}
        batches: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for slot, action in items:
            if slot in self._lost:
                answers[slot] = EpisodeFailure(self._lost[slot])
            elif slot in self._where:
                batches[self._where[slot]].append((slot, action))
            else:
                raise KeyError(f"slot {slot} has no episode: reset it first (released slots are forgotten)")
        answers.update(self._run({w: Step(tuple(batch)) for w, batch in batches.items()}))
        return {slot: answers[slot] for slot, _ in items}

    def release(self, slots: Iterable[int]) -> None:
        """Forget finished episodes (their workers keep a few idle envs for warm resets, closing the
        rest); unknown slots are ignored.

        Fire-and-forget: the workers close them before their next command, so nothing waits here.
        """
        self._check_open()
        batches: dict[int, list[int]] = defaultdict(list)
        for slot in slots:
            self._lost.pop(slot, None)
            w = self._where.pop(slot, None)
            key = self._keys.pop(slot, None)
            if w is not None:
                self._load[w].discard(slot)
                batches[w].append(slot)
                if key is not None:
                    self._idle[w].put(key)
        for w, batch in batches.items():
            self._post(w, Release(tuple(batch)))

    def close(self) -> None:
        """Close every env and stop the workers (killing any that do not stop in time)."""
        self._shutdown(graceful=True)

    def __enter__(self: P) -> P:
        return self

    def __exit__(self, *exc: object) -> None:
        # Ctrl-C means "stop now": kill the workers rather than wait for their envs to close.
        self._shutdown(graceful=not isinstance(exc[1], KeyboardInterrupt))

    @property
    def num_restarts(self) -> int:
        """Workers replaced after a crash or a timeout since the pool started."""
        return self._restarts

    def worker_of(self, slot: int) -> int | None:
        """Index of the worker hosting `slot`, None if the slot is not live."""
        return self._where.get(slot)

    # -- what each backend provides

    @abstractmethod
    def _encode(self, command: Command) -> Any:
        """A command as it travels to a worker; raises (before anything is sent) if it cannot."""

    @abstractmethod
    def _exchange(self, payloads: dict[int, Any], budgets: dict[int, float]) -> dict[int, Reply]:
        """Send each worker its encoded command and wait for every reply, worker w's within budgets[w]
        seconds; a worker that dies or overruns is `_replace`d and its reply is the failure that returns."""

    @abstractmethod
    def _post(self, w: int, command: Command) -> None:
        """Send a command that gets no reply."""

    @abstractmethod
    def _restart(self, w: int) -> None:
        """Make sure worker w is gone and start a fresh one in its place."""

    @abstractmethod
    def _shutdown(self, graceful: bool) -> None:
        """Stop every worker, letting them close their envs first when `graceful`; idempotent."""

    @abstractmethod
    def _reap(self) -> None:
        """Replace workers known to have died since the last call, before episodes are placed on them."""

    # -- bookkeeping

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this {type(self).__name__} is closed (or was interrupted); create a new one")

    def _check_call(self, slots: Iterable[int]) -> None:
        self._check_open()
        self._reap()
        seen: set[int] = set()
        for slot in slots:
            if slot in seen:
                raise ValueError(f"slot {slot} appears twice in one call")
            seen.add(slot)

    def _place(self, slot: int, key: EpisodeSpec) -> int:
        """The worker for `slot` (where it lives, else see the module docstring), with the idle-game
        mirror updated the way the worker's reset will update its envs."""
        w = self._where.get(slot)
        if w is None:
            loads = [len(hosted) for hosted in self._load]
            warm = [i for i, idle in enumerate(self._idle) if key in idle and loads[i] <= min(loads) + WARM_SLACK]
            w = min(warm or range(len(loads)), key=loads.__getitem__)
            self._where[slot] = w
            self._load[w].add(slot)
        old = self._keys.get(slot)
        if old != key:
            if old is not None:
                self._idle[w].put(old)
            self._idle[w].take(key)
            self._keys[slot] = key
        return w

    def _run(self, commands: dict[int, Reset | Step]) -> dict[int, Result]:
        """Run one batched call; the results by slot (a failed worker's failure for each of its items)."""
        if not commands:
            return {}
        payloads = {w: self._encode(cmd) for w, cmd in commands.items()}  # a bad spec fails here, harmlessly
        try:
            replies = self._exchange(payloads, {w: self.timeout_s * len(cmd.items) for w, cmd in commands.items()})
        except BaseException:  # Ctrl-C (or a bug) mid-call: replies are out of step, so stop everything
            self._shutdown(graceful=False)
            raise
        answers: dict[int, Result] = {}
        for w, cmd in commands.items():
            reply = replies[w]
            for slot, _ in cmd.items:
                answers[slot] = reply if isinstance(reply, EpisodeFailure) else reply[slot]
        return answers

    def _replace(self, w: int, reason: str, detail: str = "") -> EpisodeFailure:
        """Mark every episode worker w hosted lost, and put a fresh worker in its place."""
        for slot in self._load[w]:
            self._lost[slot] = f"episode lost with worker {w}: {reason}"
            del self._where[slot]
            self._keys.pop(slot, None)
        self._load[w] = set()
        self._idle[w] = _IdleGames()
        self._restart(w)
        self._restarts += 1
        return EpisodeFailure(reason, detail)
