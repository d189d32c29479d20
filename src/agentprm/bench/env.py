"""Environment throughput: how fast the env pool resets and steps real ALFWorld games, per worker count.

Episodes replay their expert walkthroughs, so no model is involved and the numbers measure the env
layer alone; every episode should also be won, which makes the benchmark a cheap end-to-end check.
All episodes are in flight at once, as in a rollout: one batched reset, then one batched step per
turn until every episode is done.

Each game is played `rounds` times in the same slot. The first reset of a game builds it (cold); later
ones reset the env the worker already holds (warm, see envs/worker.py). Both rates are reported, and
their ratio, as are the speed-ups of every rate over the first worker count.

Walkthroughs are padded at the front with "look" (which changes nothing) to the longest one's length,
so every episode ends on the same turn and every turn is a full batch: a rollout replaces a finished
episode at once, so its workers never idle behind one long episode. Unpadded, 8 episodes of 4-8 steps
could not scale past ~1.85x on 2 workers even with free IPC, which would measure the sample, not the pool.

Each worker is warmed up first (one reset of a game outside the sample) so the one-off engine
import and grammar parsing (~1-2 s per process) are not counted as reset time.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any

from agentprm.envs.alfworld import DEFAULT_MAX_STEPS, ALFWorldEnv
from agentprm.envs.games import GameSpec, find_games
from agentprm.envs.pool import Backend, EpisodeFailure, EpisodeSpec, open_pool
from agentprm.envs.slots import SlotPool

WARMUP_SLOT = -1
PAD_ACTION = "look"


def bench_env(
    workers: list[int], episodes: int, split: str = "valid_seen", seed: int = 0, rounds: int = 3,
    backend: Backend = "process", ray_address: str | None = None,
) -> dict[str, Any]:
    """Play `episodes` walkthroughs `rounds` times (first cold, then warm) with each worker count.

    Returns {"results": [{"workers", "episodes", "rounds", "cold_resets_per_s", "warm_resets_per_s",
    "warm_over_cold", "steps_per_s", "wall_s", "won", "steps", "failures", "restarts", "warmup_s"}, ...],
    "speedup": {"steps" | "cold_resets" | "warm_resets": {n: rate over the baseline's}}}; the baseline
    is the 1-worker run, or the first run when 1 is not among `workers`. wall_s covers the timed reset
    and step phases.
    """
    if episodes < 1 or rounds < 2 or not workers:
        raise ValueError("bench_env needs episodes >= 1, rounds >= 2 (one cold, one warm) and a worker count")
    *games, warmup = _pick_games(split, episodes + 1, seed)
    plans = _padded([ALFWorldEnv(g).walkthrough for g in games])
    specs = [EpisodeSpec(g, max_steps=max(DEFAULT_MAX_STEPS, len(plans[0]))) for g in games]
    results = []
    for n in workers:
        with open_pool(n, backend, ray_address) as pool:
            results.append(_bench_pool(pool, n, specs, plans, EpisodeSpec(warmup), rounds))
    return {"backend": backend, "results": results, "speedup": {
        "steps": _speedup(results, "steps_per_s"),
        "cold_resets": _speedup(results, "cold_resets_per_s"),
        "warm_resets": _speedup(results, "warm_resets_per_s"),
    }}


def _pick_games(split: str, n: int, seed: int) -> list[GameSpec]:
    """n games in a seeded order, cycling through the split if it has fewer than n."""
    games = find_games(split)
    random.Random(seed).shuffle(games)
    return [games[i % len(games)] for i in range(n)]


def _padded(plans: list[list[str]]) -> list[list[str]]:
    longest = max(len(p) for p in plans)
    return [[PAD_ACTION] * (longest - len(p)) + p for p in plans]


def _bench_pool(
    pool: SlotPool, n: int, specs: list[EpisodeSpec], plans: list[list[str]], warmup: EpisodeSpec, rounds: int
) -> dict[str, Any]:
    warmup_s = _warm_up(pool, warmup)
    reset_s: list[float] = []
    steps = won = failed = 0
    step_s = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        observations = pool.reset(list(enumerate(specs)))  # the same slots: warm from the second round
        reset_s.append(time.perf_counter() - start)
        live = [i for i, obs in observations.items() if not isinstance(obs, EpisodeFailure)]
        failed += len(specs) - len(live)
        s, w, f, t = _replay(pool, plans, live)
        steps, won, failed, step_s = steps + s, won + w, failed + f, step_s + t
    cold = len(specs) / reset_s[0]
    warm = len(specs) * (rounds - 1) / sum(reset_s[1:])
    return {
        "workers": n,
        "episodes": len(specs),
        "rounds": rounds,
        "cold_resets_per_s": cold,
        "warm_resets_per_s": warm,
        "warm_over_cold": warm / cold,
        "steps_per_s": steps / step_s if step_s > 0 else 0.0,
        "wall_s": sum(reset_s) + step_s,
        "won": won,
        "steps": steps,
        "failures": failed,
        "restarts": pool.num_restarts,
        "warmup_s": warmup_s,
    }


def _warm_up(pool: SlotPool, spec: EpisodeSpec) -> float:
    """One reset per worker (new slots go to the least-loaded worker), then release; the seconds it took."""
    start = time.perf_counter()
    slots = [WARMUP_SLOT - k for k in range(max(pool.num_workers, 1))]
    pool.reset([(slot, spec) for slot in slots])
    pool.release(slots)
    return time.perf_counter() - start


def _replay(pool: SlotPool, plans: Sequence[list[str]], live: list[int]) -> tuple[int, int, int, float]:
    """Step every live episode through its plan in lockstep: (steps, won, failed, seconds)."""
    steps = won = failed = turn = 0
    start = time.perf_counter()
    while live:
        results = pool.step([(i, plans[i][turn]) for i in live])
        steps += len(results)
        turn += 1
        still = []
        for i, result in results.items():
            if isinstance(result, EpisodeFailure):
                failed += 1
            elif result.done:
                won += int(result.info["won"])
            elif turn < len(plans[i]):
                still.append(i)
        live = still
    return steps, won, failed, time.perf_counter() - start


def _speedup(results: list[dict[str, Any]], key: str) -> dict[int, float]:
    base = next((r for r in results if r["workers"] == 1), results[0])[key]
    return {r["workers"]: r[key] / base if base else 0.0 for r in results}
