"""Commands that play episodes and write trajectories: `expert` (and, with a policy, rollout/eval)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from agentprm.agents.base import Agent, ExpertAgent
from agentprm.cli.common import console, success_table, write_summary
from agentprm.envs.alfworld import DEFAULT_MAX_STEPS, ALFWorldEnv
from agentprm.envs.games import GameSpec, find_games, sample_games
from agentprm.evaluation import bar_chart, markdown_table, summarize
from agentprm.rollout import Job, make_jobs, run_rollouts

SplitOpt = Annotated[str, typer.Option("--split", help="train, valid_seen or valid_unseen")]
GamesOpt = Annotated[int | None, typer.Option("--games", help="play only N games (seeded sample)")]
TaskTypeOpt = Annotated[list[str] | None, typer.Option("--task-type", help="only this task type (repeatable)")]
OutOpt = Annotated[Path, typer.Option("--out", help="output folder")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="env worker processes (default: cores)")]
SeedOpt = Annotated[int, typer.Option("--seed", help="seed for game sampling and the policy")]
MaxStepsOpt = Annotated[int, typer.Option("--max-steps", help="turns per episode")]


def select_games(split: str, games: int | None, task_types: list[str] | None, seed: int) -> list[GameSpec]:
    return sample_games(find_games(split, task_types or None), games, seed)


def play_and_report(
    agent: Agent, jobs: list[Job], out: Path, title: str, workers: int | None, max_steps: int,
    extra: dict[str, Any], max_in_flight: int = 64,
) -> dict[str, Any]:
    """Play (resuming), then write summary.json, results.md, success.png and print the table."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    episodes = run_rollouts(agent, jobs, out / "trajectories.jsonl", workers, max_steps, max_in_flight)
    summary = {**summarize(episodes), **extra, "policy_id": agent.policy_id,
               "wall_s": round(time.perf_counter() - start, 2)}
    write_summary(out, summary)
    (out / "results.md").write_text(markdown_table(summary, title))
    bar_chart(summary, out / "success.png", title)
    console.print(success_table(summary, title))
    console.print(f"wrote {out / 'summary.json'}, {out / 'trajectories.jsonl'}")
    return summary


def expert(
    split: SplitOpt = "valid_seen",
    games: GamesOpt = None,
    task_type: TaskTypeOpt = None,
    out: OutOpt = Path("runs/expert"),
    workers: WorkersOpt = None,
    seed: SeedOpt = 0,
    max_steps: MaxStepsOpt = DEFAULT_MAX_STEPS,
) -> None:
    """Replay expert walkthroughs; the trajectories are the demonstrations for SFT and InversePRM."""
    specs = select_games(split, games, task_type, seed)
    agent = ExpertAgent({g.game_id: ALFWorldEnv(g).walkthrough for g in specs})
    extra = {"command": "expert", "split": split, "games": len(specs), "seed": seed, "max_steps": max_steps}
    play_and_report(agent, make_jobs(specs), out, f"expert on {split}", workers, max_steps, extra)
