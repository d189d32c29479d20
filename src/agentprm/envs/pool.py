"""Many episodes in flight across worker processes on this machine: the vector-env layer over any TextEnv.

Why processes: the ALFWorld engine is pure Python and holds the GIL, so only separate processes make
N games advance at once. Workers start with "spawn" (never "fork": torch may already run threads in
the parent) and ignore Ctrl-C, which is the parent's to handle. Slots, batching, warm-reset placement
and the failure rules are shared with the Ray backend: see slots.py; what a worker runs: worker.py.

Here, a worker is a process talking over a pipe: one pickled command in, at most one reply out. A
dead worker is seen through its process sentinel (during a call) or `is_alive` (between calls).

As with any spawned multiprocessing, a script that creates a pool must guard its entry point with
`if __name__ == "__main__":`, and `env_factory` must be a module-level (picklable) function.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from typing import Any, Literal

from agentprm.envs.slots import Reply, SlotPool
from agentprm.envs.worker import (
    IDLE_ENVS_KEPT,
    Close,
    Command,
    EnvFactory,
    EpisodeFailure,
    EpisodeSpec,
    Result,
    WorkerState,
    make_alfworld_env,
)
from agentprm.errors import ConfigError

__all__ = ["IDLE_ENVS_KEPT", "Backend", "EnvPool", "EpisodeFailure", "EpisodeSpec", "make_alfworld_env",
           "open_pool"]

START_METHOD = "spawn"
SHUTDOWN_GRACE_S = 5.0
"""How long close() lets workers close their envs before killing them."""
KILL_WAIT_S = 2.0

Backend = Literal["process", "ray"]
"""What runs env workers: processes on this machine, or Ray actors anywhere in a Ray cluster."""


def open_pool(
    workers: int | None = None, backend: Backend = "process", ray_address: str | None = None,
    env_factory: EnvFactory = make_alfworld_env, timeout_s: float = 120.0,
) -> SlotPool:
    """The env pool a command or run config asks for (`--workers`, `--backend`, `--ray-address`).
    workers=None: one per CPU core (of this machine, or of the Ray cluster)."""
    if backend == "ray":
        from agentprm.envs.ray_pool import RayEnvPool

        return RayEnvPool(workers, env_factory, timeout_s, address=ray_address)
    if backend != "process":
        raise ConfigError(f"unknown env backend {backend!r}: choose process or ray")
    return EnvPool(workers, env_factory, timeout_s)


# ----------------------------------------------------------------------------- worker side


def _worker_main(conn: Connection, factory: EnvFactory) -> None:
    """A worker's loop: one command in, at most one reply out, until Close or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked by the parent during start
    state = WorkerState(factory)
    try:
        while True:
            try:
                command: Command = conn.recv()
            except (EOFError, OSError):  # the parent died or closed the pipe: nothing left to serve
                return
            reply = command.run(state)
            if reply is not None:
                conn.send_bytes(encode_reply(reply))
            if isinstance(command, Close):
                return
    finally:
        state.release_all()


def encode_reply(reply: dict[int, Result]) -> bytes:
    """A reply, pickled; if some result cannot be pickled, those slots fail instead of the worker."""
    try:
        return bytes(ForkingPickler.dumps(reply))
    except Exception as e:
        error = f"result could not be sent to the parent: {type(e).__name__}: {e}"
        return bytes(ForkingPickler.dumps({slot: EpisodeFailure(error) for slot in reply}))


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


class EnvPool(SlotPool):
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
        super().__init__((os.cpu_count() or 1) if num_workers is None else num_workers, timeout_s)
        self.env_factory = env_factory
        self._ctx = mp.get_context(START_METHOD)
        self._local = WorkerState(env_factory) if self.num_workers == 0 else None
        self._workers: list[_Worker] = []
        try:
            for i in range(self.num_workers):
                self._workers.append(self._start_worker(i))
        except BaseException:
            self._shutdown(graceful=False)
            raise

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (empty in-process); for monitoring and tests."""
        return [w.process.pid or -1 for w in self._workers]

    # -- talking to workers

    def _reap(self) -> None:
        """Replace workers that died between calls, before new episodes are placed on them."""
        for w, worker in enumerate(self._workers):
            if not worker.process.is_alive():
                self._replace(w, f"worker {w} crashed (exit code {worker.process.exitcode})")

    def _encode(self, command: Command) -> Any:
        return command if self._local is not None else ForkingPickler.dumps(command)

    def _exchange(self, payloads: dict[int, Any], budgets: dict[int, float]) -> dict[int, Reply]:
        if self._local is not None:
            return {w: command.run(self._local) for w, command in payloads.items()}
        for w, payload in payloads.items():
            self._send(w, payload)
        return self._gather(budgets)

    def _post(self, w: int, command: Command) -> None:
        if self._local is not None:
            command.run(self._local)
        else:
            self._send(w, ForkingPickler.dumps(command))

    def _send(self, w: int, payload: Any) -> None:
        with suppress(OSError):  # a dead worker: _gather sees it die and reports it
            self._workers[w].conn.send_bytes(payload)

    def _gather(self, budgets: dict[int, float]) -> dict[int, Reply]:
        """Wait for one reply per worker; a worker that dies or overruns its budget is replaced."""
        start = time.monotonic()
        pending = dict(budgets)
        replies: dict[int, Reply] = {}
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

    def _receive(self, w: int) -> Reply:
        worker = self._workers[w]
        if worker.conn.poll(0):
            with suppress(EOFError, OSError):
                return worker.conn.recv()
        worker.process.join(KILL_WAIT_S)  # dead or dying: wait for its exit code
        return self._replace(w, f"worker {w} crashed (exit code {worker.process.exitcode})")

    def _restart(self, w: int) -> None:
        _stop(self._workers[w])
        self._workers[w] = self._start_worker(w)

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
                    worker.conn.send(Close())
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
