"""Test-time scaling of Best-of-N: real success on a fixed game set as N grows (one PRM, one policy).

N=1 is one sample per turn at the same temperature, so the curve isolates what the PRM's choice buys.
Each N is an ordinary evaluation folder (resumable), and the curve is drawn from their summaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentprm.atomic import save_figure, write_json

if TYPE_CHECKING:
    from agentprm.envs.pool import Backend


def bench_bon(
    policy: str, prm: str, ns: Sequence[int], split: str, games: int | None, out: Path, temperature: float = 1.0,
    max_steps: int = 30, history_window: int | None = 8, max_new_tokens: int = 48, workers: int | None = None,
    seed: int = 0, show: bool = True, backend: Backend = "process", ray_address: str | None = None,
) -> dict[str, Any]:
    from agentprm.agents.best_of_n import BestOfNAgent
    from agentprm.agents.policy import LMPolicy, PolicyConfig
    from agentprm.envs.games import find_games, stratified_games
    from agentprm.evaluation import play_and_report
    from agentprm.rollout import make_jobs
    from agentprm.train.prm import PRM

    all_games = find_games(split)
    picked = stratified_games(all_games, games, seed) if games else all_games
    lm = LMPolicy.from_spec(policy, PolicyConfig(temperature=temperature, history_window=history_window,
                                                 max_new_tokens=max_new_tokens, seed=seed))
    scorer = PRM.load(prm)
    points = []
    for n in ns:
        summary = play_and_report(BestOfNAgent(lm, scorer, n), make_jobs(picked, 1, seed), out / f"bon{n}",
                                  f"Best-of-{n}", workers, max_steps, {"best_of": n, "split": split}, show=show,
                                  backend=backend, ray_address=ray_address)
        points.append({"n": n, "success": summary["eval/success"], "mean_actions": summary["eval/mean_actions"],
                       "failed": summary["eval/failed"]})
    result = {"policy": policy, "prm": prm, "split": split, "games": len(picked), "points": points}
    write_json(out / "summary.json", result)
    plot_scaling(points, out / "bon_scaling.png", f"Best-of-N on {split} ({len(picked)} games)")
    return result


def plot_scaling(points: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p["n"] for p in points], [100 * p["success"] for p in points], "o-")
    ax.set_xscale("log", base=2)
    ax.set_xticks([p["n"] for p in points], [str(p["n"]) for p in points])
    ax.set(xlabel="N (samples per turn)", ylabel="success %", title=title, ylim=(0, 100))
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
