"""Environment throughput: how fast EnvPool resets and steps real ALFWorld games, per worker count.

Episodes replay their expert walkthroughs, so no model is involved and the numbers measure the env
layer alone; every episode should also be won, which makes the benchmark a cheap end-to-end check.
All episodes are in flight at once, as in a rollout: one batched reset, then one batched step per
turn until every episode is done.

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
from agentprm.envs.pool import EnvPool, EpisodeFailure, EpisodeSpec

WARMUP_SLOT = -1


def bench_env(workers: list[int], episodes: int, split: str = "valid_seen", seed: int = 0) -> dict[str, Any]:
    """Play `episodes` walkthroughs with each worker count; rates and speedups over 1 worker.

    Returns {"results": [{"workers", "episodes", "resets_per_s", "steps_per_s", "wall_s", "won",
    "steps", "failures", "restarts", "warmup_s"}, ...], "speedup": {n: steps/s over the baseline},
    "reset_speedup": {n: resets/s over the baseline}}; the baseline is the 1-worker run, or the
    first run when 1 is not among `workers`. wall_s covers the timed reset and step phases.
    """
    if episodes < 1 or not workers:
        raise ValueError("bench_env needs episodes >= 1 and at least one worker count")
    *games, warmup = _pick_games(split, episodes + 1, seed)
    plans = [ALFWorldEnv(g).walkthrough for g in games]
    specs = [EpisodeSpec(g, max_steps=max(DEFAULT_MAX_STEPS, len(p))) for g, p in zip(games, plans, strict=True)]
    results = [_bench_workers(n, specs, plans, EpisodeSpec(warmup)) for n in workers]
    return {
        "results": results,
        "speedup": _speedup(results, "steps_per_s"),
        "reset_speedup": _speedup(results, "resets_per_s"),
    }


def _pick_games(split: str, n: int, seed: int) -> list[GameSpec]:
    """n games in a seeded order, cycling through the split if it has fewer than n."""
    games = find_games(split)
    random.Random(seed).shuffle(games)
    return [games[i % len(games)] for i in range(n)]


def _bench_workers(n: int, specs: list[EpisodeSpec], plans: list[list[str]], warmup: EpisodeSpec) -> dict[str, Any]:
    with EnvPool(n) as pool:
        warmup_s = _warm_up(pool, warmup)
        start = time.perf_counter()
        observations = pool.reset(list(enumerate(specs)))
        reset_s = time.perf_counter() - start
        live = [i for i, obs in observations.items() if not isinstance(obs, EpisodeFailure)]
        steps, won, failed, step_s = _replay(pool, plans, live)
        restarts = pool.num_restarts
    return {
        "workers": n,
        "episodes": len(specs),
        "resets_per_s": len(specs) / reset_s,
        "steps_per_s": steps / step_s if step_s > 0 else 0.0,
        "wall_s": reset_s + step_s,
        "won": won,
        "steps": steps,
        "failures": len(specs) - len(live) + failed,
        "restarts": restarts,
        "warmup_s": warmup_s,
    }


def _warm_up(pool: EnvPool, spec: EpisodeSpec) -> float:
    """One reset per worker (new slots go round-robin), then release; returns the seconds it took."""
    start = time.perf_counter()
    slots = [WARMUP_SLOT - k for k in range(max(pool.num_workers, 1))]
    pool.reset([(slot, spec) for slot in slots])
    pool.release(slots)
    return time.perf_counter() - start


def _replay(pool: EnvPool, plans: Sequence[list[str]], live: list[int]) -> tuple[int, int, int, float]:
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
    base = next((r for r in results if r["workers"] == 1), results[0])
    return {r["workers"]: r[key] / base[key] if base[key] else 0.0 for r in results}
