"""One progress display for every long stage: a rich bar with count, elapsed time and ETA.

Why one module: a user watching `agentprm train` sees demos, SFT, evals, rollouts, the PRM and the
policy step in turn; each should look the same and say how long is left. Rollouts, the PRM and the
policy step drive the bar directly; SFT, which runs inside a `transformers.Trainer`, gets it through
`train.sft.TrainerProgress`, which replaces the Trainer's tqdm bar and its printed log dictionaries.

Off a terminal (output sent to a log file, a CI job, `nohup`) rich draws no bar at all and prints
the final state once the bar stops, so a 20-minute stage would leave its log silent for 20 minutes.
There the bar also prints one plain line per task every `LOG_EVERY` seconds: count, elapsed, ETA.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

LOG_EVERY = 60.0
"""Seconds between a task's plain progress lines when the console is not a terminal."""


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-:--:--"
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class LoggedProgress(Progress):
    """A rich `Progress` that, on a console that is not a terminal, prints a task's plain line
    ("description done/total elapsed H:MM:SS eta H:MM:SS") at most every `log_every` seconds as it
    advances; on a terminal it is the plain rich bar."""

    def __init__(self, *columns: Any, log_every: float = LOG_EVERY, **kw: Any) -> None:
        super().__init__(*columns, **kw)
        self.log_every = log_every
        self._last_line: dict[TaskID, float] = {}

    def add_task(self, description: str, *args: Any, **kw: Any) -> TaskID:
        task_id = super().add_task(description, *args, **kw)
        self._last_line[task_id] = self.get_time()
        return task_id

    def update(self, task_id: TaskID, *args: Any, **kw: Any) -> None:
        super().update(task_id, *args, **kw)
        self._log_line(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._log_line(task_id)

    def _log_line(self, task_id: TaskID) -> None:
        if self.disable or self.console.is_terminal:
            return
        now = self.get_time()
        with self._lock:
            task = self._tasks[task_id]
            if task.finished or now - self._last_line.get(task_id, now) < self.log_every:
                return  # a finished task's last state is printed by rich itself when the bar stops
            self._last_line[task_id] = now
            total = "?" if task.total is None else f"{task.total:.0f}"
            line = (f"{task.description} {task.completed:.0f}/{total} elapsed {_clock(task.elapsed)} "
                    f"eta {_clock(task.time_remaining)}")
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def progress_bar(disable: bool = False, console: Console | None = None, log_every: float = LOG_EVERY) -> Progress:
    """A bar: description, bar, done/total, elapsed, ETA (the remaining time at the recent rate); off a
    terminal, a plain line per task every `log_every` seconds instead (`LoggedProgress`)."""
    return LoggedProgress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("eta"), TimeRemainingColumn(), disable=disable, console=console, transient=False,
        speed_estimate_period=900,  # a policy step can take a minute: rich's 30 s window then has no rate
        log_every=log_every,
    )
