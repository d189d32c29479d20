"""`agentprm play`: a person plays a game in the terminal (to see what the agent sees)."""

from __future__ import annotations

from typing import Annotated

import typer

from agentprm.cli.common import console
from agentprm.envs.alfworld import DEFAULT_MAX_STEPS, ALFWorldEnv
from agentprm.envs.games import find_games, resolve_game, sample_games


def play(
    split: Annotated[str, typer.Option("--split")] = "valid_seen",
    game: Annotated[str | None, typer.Option("--game", help="game id, task folder or path; default: random")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    max_steps: Annotated[int, typer.Option("--max-steps")] = DEFAULT_MAX_STEPS,
) -> None:
    """Play one ALFWorld game: type a command or the number of a listed action; `quit` to stop."""
    spec = resolve_game(game, split) if game else sample_games(find_games(split), 1, seed)[0]
    env = ALFWorldEnv(spec, max_steps=max_steps)
    obs = env.reset()
    console.print(f"[bold]{spec.game_id}[/bold]\n[bold]Task:[/bold] {obs.task}\n{obs.text}", highlight=False)
    steps = 0
    while True:
        for i, a in enumerate(obs.admissible_actions, 1):
            console.print(f"  [dim]{i:2d}.[/dim] {a}", highlight=False)
        try:
            line = input(f"[{steps}/{max_steps}] > ").strip()
        except EOFError:
            line = "quit"
        if line in ("quit", "exit", "q"):
            console.print("bye")
            break
        if line.isdigit() and 1 <= int(line) <= len(obs.admissible_actions):
            line = obs.admissible_actions[int(line) - 1]
        obs, reward, done, info = env.step(line)
        steps += 1
        console.print(f"[cyan]{line}[/cyan] → {obs.text}", highlight=False)
        if done:
            msg = "[green bold]You won![/green bold]" if info["won"] else "[red]Out of steps.[/red]"
            console.print(f"{msg} ({steps} steps, reward {reward})")
            break
    env.close()


