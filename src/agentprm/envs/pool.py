"""Many episodes in flight across worker processes: the vector-env layer over any TextEnv.

Why processes: the ALFWorld engine is pure Python (a reset ~1.5 s, a step ~70 ms) and holds the GIL,
so only separate processes make N games advance at once. Workers start with "spawn" (never "fork":
torch may already run threads in the parent) and ignore Ctrl-C, which is the parent's to handle.

How a call works: the caller names episodes by integer *slots* of its own choosing. A batched call
groups its items by the worker hosting each slot and sends every worker its whole sub-batch as ONE
command object; the workers run their sub-batches in parallel and answer with one reply each.
New slots go to the least-loaded worker and stay there until released.

Env failures never escape as exceptions and never vanish (STYLE.md, rule 4):
- an exception inside env.reset/step becomes an `EpisodeFailure` for that slot (with traceback);
  the worker and its other episodes go on;
- a worker that dies, or that does not answer within `timeout_s` per op of its sub-batch, is killed
  and replaced; every item it was serving fails with "worker k crashed/timed out", and every slot
  it hosted answers later calls with "episode lost with worker k" until it is reset or released.
Every wait has a deadline, as in Gymnasium's AsyncVectorEnv: a hung engine cannot hang the run.

As with any spawned multiprocessing, a script that creates a pool must guard its entry point with
`if __name__ == "__main__":`, and `env_factory` must be a module-level (picklable) function.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any, Protocol

from agentprm.envs.alfworld import DEFAULT_MAX_STEPS, ALFWorldEnv
from agentprm.envs.games import GameSpec
from agentprm.envs.protocol import Observation, StepResult, TextEnv

START_METHOD = "spawn"
SHUTDOWN_GRACE_S = 5.0
"""How long close() lets workers close their envs before killing them."""
KILL_WAIT_S = 2.0


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
    """The default factory: one ALFWorld game. Module-level so spawned workers can unpickle it."""
    return ALFWorldEnv(spec.game, spec.max_steps, spec.expert)


# ----------------------------------------------------------------------------- worker side


IDLE_ENVS_KEPT = 8
"""Envs of finished episodes a worker keeps, by game, for warm resets (repeats of a game, Best-of-N,
reset-distribution starts): a warm ALFWorld reset takes ~0.02 s against ~0.5 s for a new one."""


class _WorkerState:
    """The envs one worker hosts, by slot, plus a few idle ones by game for warm resets. Also serves
    num_workers=0 (in-process) pools."""

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


def _guarded(fn: Callable[..., Result], *args: Any) -> Result:
    """Run one env op; an exception fails that episode only."""
    try:
        return fn(*args)
    except Exception as e:
        return EpisodeFailure(f"{type(e).__name__}: {e}".splitlines()[0], traceback.format_exc())


class _Command(Protocol):
    """A message to a worker. `run` returns the reply, or None for commands the parent doesn't await."""

    def run(self, state: _WorkerState) -> dict[int, Result] | None: ...


@dataclass(frozen=True)
class _Reset:
    items: tuple[tuple[int, EpisodeSpec], ...]

    def run(self, state: _WorkerState) -> dict[int, Result]:
        return {slot: _guarded(state.reset, slot, spec) for slot, spec in self.items}


@dataclass(frozen=True)
class _Step:
    items: tuple[tuple[int, str], ...]

    def run(self, state: _WorkerState) -> dict[int, Result]:
        return {slot: _guarded(state.step, slot, action) for slot, action in self.items}


@dataclass(frozen=True)
class _Release:
    slots: tuple[int, ...]

    def run(self, state: _WorkerState) -> None:
        for slot in self.slots:
            with suppress(Exception):  # the episode is over either way
                state.release(slot)


@dataclass(frozen=True)
class _Close:
    def run(self, state: _WorkerState) -> None:
        state.release_all()


def _worker_main(conn: Connection, factory: EnvFactory) -> None:
    """A worker's loop: one command in, at most one reply out, until _Close or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent during start
    state = _WorkerState(factory)
    try:
        while True:
            try:
                command: _Command = conn.recv()
            except (EOFError, OSError):  # the parent died or closed the pipe: nothing left to serve
                return
            reply = command.run(state)
            if reply is not None:
                _send_reply(conn, reply)
            if isinstance(command, _Close):
                return
    finally:
        state.release_all()


def _send_reply(conn: Connection, reply: dict[int, Result]) -> None:
    """Send a reply; if some result cannot be pickled, fail those slots instead of the worker."""
    try:
        payload = ForkingPickler.dumps(reply)
    except Exception as e:
        error = f"result could not be sent to the parent: {type(e).__name__}: {e}"
        payload = ForkingPickler.dumps({slot: EpisodeFailure(error) for slot in reply})
    conn.send_bytes(payload)


# ----------------------------------------------------------------------------- parent side


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT while starting a worker, so it inherits the block and a Ctrl-C that arrives
    before it has set SIG_IGN cannot print a KeyboardInterrupt traceback from inside it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class EnvPool:
    """Episodes, named by caller-chosen integer slots, spread over `num_workers` processes.

    num_workers=None uses os.cpu_count(); 0 runs everything in this process, sequentially, with the
    same API (for debugging, and as the reference the pool's results must equal). `env_factory`
    builds an env from an EpisodeSpec inside a worker, so it must be picklable (module-level).
    A worker gets `timeout_s` per op of its sub-batch before it is declared hung.
    """

    def __init__(
        self,
        num_workers: int | None = None,
        env_factory: EnvFactory = make_alfworld_env,
        timeout_s: float = 120.0,
    ):
        n = (os.cpu_count() or 1) if num_workers is None else num_workers
        if n < 0 or timeout_s <= 0:
            raise ValueError(f"need num_workers >= 0 and timeout_s > 0, got {num_workers}, {timeout_s}")
        self.num_workers = n
        self.env_factory = env_factory
        self.timeout_s = timeout_s
        self._ctx = mp.get_context(START_METHOD)
        self._local = _WorkerState(env_factory) if n == 0 else None
        self._workers: list[_Worker] = []
        self._load: list[set[int]] = [set() for _ in range(max(n, 1))]
        self._where: dict[int, int] = {}
        self._lost: dict[int, str] = {}
        self._restarts = 0
        self._closed = False
        try:
            self._workers = [self._start_worker(i) for i in range(n)]
        except BaseException:
            self._shutdown(graceful=False)
            raise

    # -- public API

    def reset(self, items: Sequence[tuple[int, EpisodeSpec]]) -> dict[int, Observation | EpisodeFailure]:
        """(Re)start an episode in each slot; a slot already in use keeps its worker (and warm env)."""
        self._check_call(slot for slot, _ in items)
        batches: dict[int, list[tuple[int, EpisodeSpec]]] = defaultdict(list)
        for slot, spec in items:
            self._lost.pop(slot, None)
            batches[self._place(slot)].append((slot, spec))
        answers = self._run({w: _Reset(tuple(batch)) for w, batch in batches.items()})
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
        answers.update(self._run({w: _Step(tuple(batch)) for w, batch in batches.items()}))
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
            if w is not None:
                self._load[w].discard(slot)
                batches[w].append(slot)
        for w, batch in batches.items():
            self._post(w, _Release(tuple(batch)))

    def close(self) -> None:
        """Close every env and stop the workers (killing any that do not stop in time)."""
        self._shutdown(graceful=True)

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        # Ctrl-C means "stop now": kill the workers rather than wait for their envs to close.
        self._shutdown(graceful=not isinstance(exc[1], KeyboardInterrupt))

    @property
    def num_restarts(self) -> int:
        """Workers replaced after a crash or a timeout since the pool started."""
        return self._restarts

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (empty in-process); for monitoring and tests."""
        return [w.process.pid or -1 for w in self._workers]

    def worker_of(self, slot: int) -> int | None:
        """Index of the worker hosting `slot`, None if the slot is not live."""
        return self._where.get(slot)

    # -- bookkeeping

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this EnvPool is closed (or was interrupted); create a new one")

    def _check_call(self, slots: Iterable[int]) -> None:
        self._check_open()
        self._reap()
        seen: set[int] = set()
        for slot in slots:
            if slot in seen:
                raise ValueError(f"slot {slot} appears twice in one call")
            seen.add(slot)

    def _reap(self) -> None:
        """Replace workers that died between calls, before new episodes are placed on them."""
        for w, worker in enumerate(self._workers):
            if not worker.process.is_alive():
                self._replace(w, f"worker {w} crashed (exit code {worker.process.exitcode})")

    def _place(self, slot: int) -> int:
        """The worker for `slot`: where it already lives, else the least-loaded one."""
        if slot not in self._where:
            w = min(range(len(self._load)), key=lambda i: len(self._load[i]))
            self._where[slot] = w
            self._load[w].add(slot)
        return self._where[slot]

    # -- talking to workers

    def _run(self, commands: dict[int, _Reset | _Step]) -> dict[int, Result]:
        """Send each worker its command, wait for all replies, return the results by slot."""
        if self._local is not None:
            return {slot: r for cmd in commands.values() for slot, r in (cmd.run(self._local) or {}).items()}
        payloads = {w: ForkingPickler.dumps(cmd) for w, cmd in commands.items()}  # a bad spec fails here
        try:
            for w, payload in payloads.items():
                self._send(w, payload)
            replies = self._gather({w: self.timeout_s * len(cmd.items) for w, cmd in commands.items()})
        except BaseException:  # Ctrl-C (or a bug) mid-call: replies are out of step, so stop everything
            self._shutdown(graceful=False)
            raise
        answers: dict[int, Result] = {}
        for w, cmd in commands.items():
            reply = replies[w]
            for slot, _ in cmd.items:
                answers[slot] = reply if isinstance(reply, EpisodeFailure) else reply[slot]
        return answers

    def _post(self, w: int, command: _Command) -> None:
        """Send a command that gets no reply."""
        if self._local is not None:
            command.run(self._local)
        else:
            self._send(w, ForkingPickler.dumps(command))

    def _send(self, w: int, payload: Any) -> None:
        with suppress(OSError):  # a dead worker: _gather sees it die and reports it
            self._workers[w].conn.send_bytes(payload)

    def _gather(self, budgets: dict[int, float]) -> dict[int, dict[int, Result] | EpisodeFailure]:
        """Wait for one reply per worker; a worker that dies or overruns its budget is replaced."""
        start = time.monotonic()
        pending = dict(budgets)
        replies: dict[int, dict[int, Result] | EpisodeFailure] = {}
        while pending:
            now = time.monotonic()
            for w in [w for w, budget in pending.items() if now - start >= budget]:
                budget = pending.pop(w)
                replies[w] = self._replace(w, f"worker {w} timed out after {budget:g}s")
            handles = {h: w for w in pending for h in _handles(self._workers[w])}
            timeout = min(pending.values(), default=0.0) - (now - start)
            for w in {handles[h] for h in wait(list(handles), timeout=max(timeout, 0.0))}:
                pending.pop(w)
                replies[w] = self._receive(w)
        return replies

    def _receive(self, w: int) -> dict[int, Result] | EpisodeFailure:
        worker = self._workers[w]
        if worker.conn.poll(0):
            with suppress(EOFError, OSError):
                return worker.conn.recv()
        worker.process.join(KILL_WAIT_S)  # dead or dying: wait for its exit code
        return self._replace(w, f"worker {w} crashed (exit code {worker.process.exitcode})")

    def _replace(self, w: int, reason: str) -> EpisodeFailure:
        """Kill worker w, mark every episode it hosted lost, and start a fresh worker in its place."""
        _stop(self._workers[w])
        for slot in self._load[w]:
            self._lost[slot] = f"episode lost with worker {w}: {reason}"
            del self._where[slot]
        self._load[w] = set()
        self._workers[w] = self._start_worker(w)
        self._restarts += 1
        return EpisodeFailure(reason)

    def _start_worker(self, index: int) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_worker_main, args=(child_conn, self.env_factory), name=f"envpool-{index}", daemon=True
        )
        with _sigint_blocked():
            process.start()
        child_conn.close()  # keep only the worker's end open, so its death reads as EOF here
        return _Worker(process, parent_conn)

    def _shutdown(self, graceful: bool) -> None:
        if self._closed:
            return
        self._closed = True
        if graceful:
            for worker in self._workers:
                with suppress(OSError):
                    worker.conn.send(_Close())
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        for worker in self._workers:
            if graceful:
                worker.process.join(max(deadline - time.monotonic(), 0.0))
            _stop(worker)
        if self._local is not None:
            self._local.release_all()


def _handles(worker: _Worker) -> tuple[Any, ...]:
    """What to wait on for a worker: its pipe (a reply) and its sentinel (its death)."""
    return worker.conn, worker.process.sentinel


def _stop(worker: _Worker) -> None:
    """Make sure a worker process is gone. SIGKILL, because a worker that did not stop when asked
    may be stuck in C code, and SIGTERM would print nothing more useful."""
    if worker.process.is_alive():
        worker.process.kill()
        worker.process.join(KILL_WAIT_S)
    worker.conn.close()
