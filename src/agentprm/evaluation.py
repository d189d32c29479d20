"""Success metrics the way the paper reports them (Table 1), and the files a result leaves behind.

A cut-off episode counts as a loss. A *failed* one (the environment could not serve it, even after the
rollout's retries: see rollout.py) does not: its outcome is unknown, and counting it as a loss makes an
agent look worse for a worker crash (a run of 8 games the expert all wins read 5/8 after one worker
was killed). So success, "#actions" and the non-admissible rate are over the episodes that finished,
and every table shows "won" as won/finished, adds a "failed" column and a warning line whenever an
episode failed: leaving failed episodes out can still bias the figure (a long episode is likelier to
meet a crash), so the reader must see how many there were, and that a rerun retries them.
"#actions" is the mean number of turns per episode; the non-admissible rate is over all actions taken.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentprm.atomic import save_figure, write_json, write_text
from agentprm.envs.games import TASK_SHORT, TASK_TYPES
from agentprm.errors import CorruptRecordError
from agentprm.trajectory import Episode

if TYPE_CHECKING:
    from agentprm.envs.pool import Backend


def is_empty(step: Any) -> bool:
    """The policy said nothing usable (the parser then sends "look", which the game accepts): counted
    apart, and as non-admissible, so a policy that answers nothing cannot look well-behaved."""
    return step.raw_output is not None and not step.raw_output.strip()


def _counts(episodes: list[Episode]) -> dict[str, Any]:
    """Episodes, failed, won, success, mean actions, non-admissible rate and empty answers of a group;
    the rates over finished episodes."""
    finished = [ep for ep in episodes if ep.failed is None]
    won = sum(ep.won for ep in finished)
    steps = [s for ep in finished for s in ep.steps]
    return {
        "episodes": len(episodes),
        "failed": len(episodes) - len(finished),
        "won": won,
        "success": won / len(finished) if finished else 0.0,
        "mean_actions": len(steps) / len(finished) if finished else 0.0,
        "non_admissible_rate": sum(not s.admissible for s in steps) / len(steps) if steps else 0.0,
        "empty_answers": sum(is_empty(s) for s in steps),
    }


def summarize(episodes: list[Episode]) -> dict[str, Any]:
    """Namespaced metrics: overall and per task type success, #actions, non-admissible rate (each over
    the finished episodes), empty answers, how many failed, and how many needed more than one attempt."""
    per_type = {TASK_SHORT[t]: _counts([ep for ep in episodes if ep.task_type == t])
                for t in TASK_TYPES if any(ep.task_type == t for ep in episodes)}
    total = _counts(episodes)
    finished = [ep for ep in episodes if ep.failed is None]
    return {
        "eval/episodes": total["episodes"],
        "eval/finished": total["episodes"] - total["failed"],
        "eval/won": total["won"],
        "eval/success": total["success"],
        "eval/mean_actions": total["mean_actions"],
        "eval/non_admissible_rate": total["non_admissible_rate"],
        "eval/empty_answers": total["empty_answers"],
        "eval/failed": total["failed"],
        "eval/retried": sum(ep.attempts > 1 for ep in episodes),
        "eval/truncated": sum(ep.truncated for ep in finished),
        **expert_agreement(finished),
        **agent_stats(finished),
        "per_task_type": per_type,
    }


# What `summarize` writes and what the loop's select and report read back.
SUMMARY_KEYS = ("eval/episodes", "eval/won", "eval/success", "eval/mean_actions", "eval/non_admissible_rate",
                "per_task_type")


def read_summary(path: Path, keys: tuple[str, ...] = SUMMARY_KEYS) -> dict[str, Any]:
    """An evaluation's summary.json, checked for the `keys` of it that the reader uses (by default what
    `summarize` writes; per task type, won and episodes). A summary edited by hand or written by another
    tool then fails here, in one line that names the file and what it lacks, not as a KeyError deep in
    `select` or the report."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptRecordError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptRecordError(f"{path}: not a readable JSON summary ({e})") from None
    if not isinstance(data, dict):
        raise CorruptRecordError(f"{path}: not a JSON object")
    missing = [k for k in keys if k not in data]
    per_type = data.get("per_task_type") if "per_task_type" in keys else None
    if isinstance(per_type, dict):
        missing += [f"per_task_type.{t}.{k}" for t, r in per_type.items() for k in ("won", "episodes")
                    if not isinstance(r, dict) or k not in r]
    elif per_type is not None:
        missing.append("per_task_type (an object)")
    if missing:
        raise CorruptRecordError(f"{path}: lacks {', '.join(missing)}: not an evaluation summary as agentprm "
                                 "writes it (evaluation.summarize)")
    return data


def expert_agreement(finished: list[Episode]) -> dict[str, float]:
    """How often the agent already did what the expert beside it would have done (episodes played with
    expert labels, e.g. a DAgger round): the share of expert-labelled turns whose action is the label.
    It says how far the learner is from its teacher, on the learner's own states, which success alone
    hides; empty when no turn carries a label."""
    labelled = [s for ep in finished for s in ep.steps if s.expert_action is not None]
    if not labelled:
        return {}
    return {"eval/expert_labelled": len(labelled),
            "eval/expert_agreement": sum(s.action == s.expert_action for s in labelled) / len(labelled)}


def agent_stats(finished: list[Episode]) -> dict[str, float]:
    """The agent's own counters (`Episode.meta["agent_stats"]`, e.g. `lookahead/extra_env_steps`) summed
    over `finished` (episodes that did not fail), each also per turn (over their steps). Read from the
    episodes, not from the agent, so a resumed eval counts the episodes of earlier runs too."""
    totals: dict[str, float] = {}
    for ep in finished:
        for key, value in ep.meta.get("agent_stats", {}).items():
            totals[key] = totals.get(key, 0) + value
    turns = sum(ep.num_steps for ep in finished)
    out: dict[str, float] = {}
    for key in sorted(totals):
        out[key] = totals[key]
        out[f"{key}_per_turn"] = totals[key] / turns if turns else 0.0
    return out


COLUMNS = ("task", "success %", "won", "failed", "#actions", "non-adm. %", "empty")


def _row(name: str, r: dict[str, Any]) -> tuple[str, ...]:
    finished = r["episodes"] - r.get("failed", 0)
    success = f"{100 * r['success']:.1f}" if finished else "–"
    non_adm = f"{100 * r['non_admissible_rate']:.1f}" if "non_admissible_rate" in r else "–"
    empty = str(r["empty_answers"]) if "empty_answers" in r else "–"
    return (name, success, f"{r['won']}/{finished}", str(r.get("failed", 0)), f"{r['mean_actions']:.1f}",
            non_adm, empty)


def table_rows(summary: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows of COLUMNS: All first, then Table 1's order. Success is over the finished episodes ("–"
    when none finished; see the module docstring); "–" also marks a figure an older summary lacks."""
    total = {"episodes": summary["eval/episodes"], "failed": summary.get("eval/failed", 0),
             "won": summary["eval/won"], "success": summary["eval/success"],
             "mean_actions": summary["eval/mean_actions"]}
    if "eval/non_admissible_rate" in summary:
        total["non_admissible_rate"] = summary["eval/non_admissible_rate"]
    if "eval/empty_answers" in summary:
        total["empty_answers"] = summary["eval/empty_answers"]
    rows = [_row("All", total)]
    for name in ("Pick", "Clean", "Heat", "Cool", "Look", "Pick2"):
        r = summary["per_task_type"].get(name)
        if r:
            rows.append(_row(name, r))
    return rows


def failure_note(summary: dict[str, Any]) -> str | None:
    """The warning every table carries when episodes failed (None when none did)."""
    failed, n = summary.get("eval/failed", 0), summary["eval/episodes"]
    if not failed:
        return None
    return (f"warning: {failed} of {n} episodes failed (the environment could not serve them, even after "
            f"retries); success is over the {n - failed} that finished, not counting them as losses. "
            "Rerun the same command to retry them.")


def _columns(summary: dict[str, Any]) -> tuple[list[str], list[int]]:
    """Column names and which fields of `table_rows` to show: "failed" only when an episode failed."""
    keep = [i for i, name in enumerate(COLUMNS) if name != "failed" or summary.get("eval/failed", 0)]
    return [COLUMNS[i] for i in keep], keep


def success_table(summary: dict[str, Any], title: str) -> Any:
    """The same rows as a rich table, for the terminal, followed by the failure warning if any (a
    line of its own: as the table's caption it would wrap to the table's width)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    names, keep = _columns(summary)
    table = Table(title=title)
    for col in names:
        table.add_column(col, justify="left" if col == "task" else "right")
    for row in table_rows(summary):
        table.add_row(*(row[i] for i in keep))
    note = failure_note(summary)
    return Group(table, Text(note, style="bold yellow")) if note else table


def markdown_table(summary: dict[str, Any], title: str = "") -> str:
    names, keep = _columns(summary)
    lines = [f"### {title}", ""] if title else []
    lines += ["| " + " | ".join(names) + " |", "|---|" + "---:|" * (len(names) - 1)]
    lines += ["| " + " | ".join(row[i] for i in keep) + " |" for row in table_rows(summary)]
    note = failure_note(summary)
    if note:
        lines += ["", f"> **{note}**"]
    return "\n".join(lines) + "\n"


def bar_chart(summary: dict[str, Any], path: Path, title: str) -> None:
    """Success per task type as a PNG (people read this faster than the table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table_rows(summary)
    names = [r[0] for r in rows]
    values = [float(r[1]) if r[1] != "–" else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bars = ax.bar(names, values, color=["#444"] + ["#4c72b0"] * (len(names) - 1))
    ax.bar_label(bars, fmt="%.0f")
    ax.set_ylim(0, 105)
    ax.set_ylabel("success %")
    ax.set_title(title + (f" ({summary['eval/failed']} failed, not counted)" if summary.get("eval/failed") else ""))
    fig.tight_layout()
    save_figure(fig, path)


def play_and_report(
    agent: Any, jobs: list[Any], out: Path, title: str, workers: int | None, max_steps: int,
    extra: dict[str, Any], max_in_flight: int = 64, show: bool = True, expert: str | None = None,
    retries: int | None = None, backend: Backend = "process", ray_address: str | None = None,
) -> dict[str, Any]:
    """Play the jobs (resuming), then write summary.json, results.md, success.png; print the table.
    `expert` runs that expert beside every game (its actions recorded as labels); `retries`: replays
    of an episode lost to an env fault (None: rollout.DEFAULT_RETRIES); `backend`, `ray_address`: what
    runs the env workers (envs.pool.open_pool)."""
    import time

    from agentprm.rollout import DEFAULT_RETRIES, run_rollouts

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    retries = DEFAULT_RETRIES if retries is None else retries
    episodes = run_rollouts(agent, jobs, out / "trajectories.jsonl", workers, max_steps, max_in_flight, show, expert,
                            retries, title, backend, ray_address)
    summary = {**summarize(episodes), **extra, "retries": retries, "policy_id": agent.policy_id,
               "wall_s": round(time.perf_counter() - start, 2)}
    write_json(out / "summary.json", summary)
    write_text(out / "results.md", markdown_table(summary, title))
    bar_chart(summary, out / "success.png", title)
    if show:
        from rich.console import Console

        Console().print(success_table(summary, title))
        Console().print(f"wrote {out / 'summary.json'}, {out / 'trajectories.jsonl'}")
    return summary
