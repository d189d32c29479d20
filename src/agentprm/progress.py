"""One progress display for every long stage: a rich bar with count, elapsed time and ETA.

Why one module: a user watching `agentprm train` sees demos, SFT, evals, rollouts, the PRM and the
policy step in turn; each should look the same and say how long is left. Rollouts, the PRM and the
policy step drive the bar directly; SFT, which runs inside a `transformers.Trainer`, gets it through
`train.sft.TrainerProgress`, which replaces the Trainer's tqdm bar and its printed log dictionaries.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(disable: bool = False, console: Console | None = None) -> Progress:
    """A bar: description, bar, done/total, elapsed, ETA (the remaining time at the recent rate)."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), disable=disable, console=console, transient=False,
        speed_estimate_period=900,  # a policy step can take a minute: rich's 30 s window then has no rate
    )
