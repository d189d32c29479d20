"""The progress bar off a terminal: plain lines at most every `log_every` seconds of (fake) time, so a
long stage's log file shows how far it got and how long is left; nothing extra on a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from agentprm.progress import LoggedProgress, progress_bar


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(terminal: bool) -> list[str]:
    out, clock = io.StringIO(), Clock()
    console = Console(file=out, force_terminal=terminal, width=100)
    bar = LoggedProgress(console=console, get_time=clock, log_every=60.0, auto_refresh=False)
    with bar:
        task = bar.add_task("rollouts of pi0", total=10)
        for k in range(10):  # 25 s per episode: lines after episodes 3 (75 s), 6 (150 s) and 9 (225 s)
            clock.now += 25.0
            if k % 2:  # both ways of moving a bar
                bar.advance(task)
            else:
                bar.update(task, advance=1)
    return out.getvalue().splitlines()


def test_a_log_file_gets_a_line_a_minute_with_count_elapsed_and_eta() -> None:
    """ETA at the rate so far (1 episode / 25 s): 7, 4 and 1 episodes left."""
    out = run(terminal=False)
    assert out[-1].startswith("rollouts of pi0 ━") and "100%" in out[-1]  # rich's own last state, at the stop
    expected = ["rollouts of pi0 3/10 elapsed 0:01:15 eta 0:02:55",
                "rollouts of pi0 6/10 elapsed 0:02:30 eta 0:01:40",
                "rollouts of pi0 9/10 elapsed 0:03:45 eta 0:00:25"]
    assert [ln for ln in out if " elapsed " in ln] == expected


def test_a_terminal_gets_only_the_bar() -> None:
    assert not any(ln.startswith("rollouts of pi0 3/10") for ln in run(terminal=True))


def test_progress_bar_builds_one_that_logs() -> None:
    bar = progress_bar(log_every=5.0)
    assert isinstance(bar, LoggedProgress) and bar.log_every == 5.0
