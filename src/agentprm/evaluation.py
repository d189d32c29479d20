"""Success metrics the way the paper reports them (Table 1), and the files a result leaves behind.

A failed episode (worker crash) counts as a loss; a cut-off one too. "#actions" is the mean number
of turns per episode; the non-admissible rate is over all actions taken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentprm.atomic import save_figure, write_json
from agentprm.envs.games import TASK_SHORT, TASK_TYPES
from agentprm.trajectory import Episode


def summarize(episodes: list[Episode]) -> dict[str, Any]:
    """Namespaced metrics: overall and per task type success, #actions, non-admissible rate."""
    n = len(episodes)
    steps = sum(ep.num_steps for ep in episodes)
    bad = sum(not s.admissible for ep in episodes for s in ep.steps)
    per_type: dict[str, dict[str, float]] = {}
    for t in TASK_TYPES:
        eps = [ep for ep in episodes if ep.task_type == t]
        if eps:
            per_type[TASK_SHORT[t]] = {
                "episodes": len(eps),
                "won": sum(ep.won for ep in eps),
                "success": sum(ep.won for ep in eps) / len(eps),
                "mean_actions": sum(ep.num_steps for ep in eps) / len(eps),
            }
    return {
        "eval/episodes": n,
        "eval/won": sum(ep.won for ep in episodes),
        "eval/success": sum(ep.won for ep in episodes) / n if n else 0.0,
        "eval/mean_actions": steps / n if n else 0.0,
        "eval/non_admissible_rate": bad / steps if steps else 0.0,
        "eval/failed": sum(ep.failed is not None for ep in episodes),
        "eval/truncated": sum(ep.truncated for ep in episodes),
        "per_task_type": per_type,
    }


def table_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(column, success %, won/episodes, mean actions) rows: All first, then Table 1's order."""
    rows = [("All", f"{100 * summary['eval/success']:.1f}", f"{summary['eval/won']}/{summary['eval/episodes']}",
             f"{summary['eval/mean_actions']:.1f}")]
    for name in ("Pick", "Clean", "Heat", "Cool", "Look", "Pick2"):
        r = summary["per_task_type"].get(name)
        if r:
            rows.append((name, f"{100 * r['success']:.1f}", f"{r['won']}/{r['episodes']}", f"{r['mean_actions']:.1f}"))
    return rows


def success_table(summary: dict[str, Any], title: str) -> Any:
    """The same rows as a rich table, for the terminal."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("task", "success %", "won", "#actions"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for row in table_rows(summary):
        table.add_row(*row)
    return table


def markdown_table(summary: dict[str, Any], title: str = "") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += ["| task | success % | won | #actions |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in table_rows(summary)]
    return "\n".join(lines) + "\n"


def bar_chart(summary: dict[str, Any], path: Path, title: str) -> None:
    """Success per task type as a PNG (people read this faster than the table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table_rows(summary)
    names = [r[0] for r in rows]
    values = [float(r[1]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars = ax.bar(names, values, color=["#444"] + ["#4c72b0"] * (len(names) - 1))
    ax.bar_label(bars, fmt="%.0f")
    ax.set_ylim(0, 105)
    ax.set_ylabel("success %")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def play_and_report(
    agent: Any, jobs: list[Any], out: Path, title: str, workers: int | None, max_steps: int,
    extra: dict[str, Any], max_in_flight: int = 64, show: bool = True, expert: str | None = None,
) -> dict[str, Any]:
    """Play the jobs (resuming), then write summary.json, results.md, success.png; print the table.
    `expert` runs that expert beside every game (its actions recorded as labels)."""
    import time

    from agentprm.rollout import run_rollouts

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    episodes = run_rollouts(agent, jobs, out / "trajectories.jsonl", workers, max_steps, max_in_flight, show, expert)
    summary = {**summarize(episodes), **extra, "policy_id": agent.policy_id,
               "wall_s": round(time.perf_counter() - start, 2)}
    write_json(out / "summary.json", summary)
    (out / "results.md").write_text(markdown_table(summary, title))
    bar_chart(summary, out / "success.png", title)
    if show:
        from rich.console import Console

        Console().print(success_table(summary, title))
        Console().print(f"wrote {out / 'summary.json'}, {out / 'trajectories.jsonl'}")
    return summary
