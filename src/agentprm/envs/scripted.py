"""Scripted toy environments with the TextEnv contract, for testing agents, rollouts and the pool.

A `ScriptedEnv` is a tiny deterministic game: the agent wins by issuing the `solution` commands in
order. It follows every rule of `protocol.py` (non-admissible commands cost a step, outcome reward on
the last step, truncation at `max_steps`, prefixes do not count) and passes `check_env`, so code that
works against it should work against ALFWorld, in milliseconds and without game files.

`FaultyScriptedEnv` adds magic commands that misbehave the ways real engines do (crash the process,
hang, raise), so tests can drive the pool's failure handling on purpose.

Both come with module-level factories (`make_scripted_env`, `make_faulty_env`) because pool workers
run in spawned processes and need a picklable way to build an env from an `EpisodeSpec`.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from agentprm.envs.games import GameSpec
from agentprm.envs.protocol import Observation, StepResult

if TYPE_CHECKING:
    from agentprm.envs.pool import EpisodeSpec

SCRIPTED_SPLIT = "scripted"
DISTRACTORS = ("inventory", "look")
CRASH, HANG, RAISE = "crash", "hang", "raise"
CRASH_EXIT_CODE = 13


class ScriptedEnv:
    """Win by sending `solution` in order; any other command is a wasted (but legal) step."""

    def __init__(
        self,
        solution: Sequence[str] = ("go to desk 1", "take key 1 from desk 1", "go to door 1", "open door 1"),
        task: str = "open the door.",
        max_steps: int = 30,
        game_id: str = f"{SCRIPTED_SPLIT}/0",
    ):
        if not solution:
            raise ValueError("a scripted game needs at least one solution command")
        self.solution = list(solution)
        self.task = task
        self.max_steps = max_steps
        self.game_id = game_id
        self._progress = 0
        self._steps = 0
        self._done = True
        self.resets = 0
        """Resets of this env object so far (in the reset info), so tests can tell a warm reset."""

    @property
    def walkthrough(self) -> list[str]:
        """The winning command list, named as ALFWorldEnv names it."""
        return list(self.solution)

    def admissible_actions(self) -> list[str]:
        nxt = [self.solution[self._progress]] if self._progress < len(self.solution) else []
        return sorted({*nxt, *DISTRACTORS})

    def reset(self, prefix: Sequence[str] = ()) -> Observation:
        self._progress, self._steps, self._done = 0, 0, False
        self.resets += 1
        text = "You are in a small room. There is a desk, a shelf and a door."
        turns = []
        for action in prefix:
            turns.append((text, action))
            text = self._advance(action)
            if self._won:
                break
        self._done = self._won
        return self._observation(text, prefix_len=len(turns), prefix_turns=turns, won=self._won, resets=self.resets)

    def step(self, action: str) -> StepResult:
        if self._done:
            raise RuntimeError("step() after the episode ended: call reset() first")
        admissible = action in self.admissible_actions()
        text = self._advance(action)
        self._steps += 1
        won = self._won
        truncated = not won and self._steps >= self.max_steps
        self._done = won or truncated
        info = {"won": won, "truncated": truncated, "admissible": admissible, "steps": self._steps}
        return StepResult(self._observation(text, won=won), 1.0 if won else 0.0, self._done, info)

    def close(self) -> None:
        self._done = True

    @property
    def _won(self) -> bool:
        return self._progress >= len(self.solution)

    def _advance(self, action: str) -> str:
        """Apply one command and return the engine's feedback."""
        if not self._won and action == self.solution[self._progress]:
            self._progress += 1
            return f"You {action}."
        return "Nothing changes." if action in DISTRACTORS else "Nothing happens."

    def _observation(self, text: str, **info: Any) -> Observation:
        return Observation(
            task=self.task,
            text=text,
            admissible_actions=self.admissible_actions(),
            info={"game_id": self.game_id, "task_type": SCRIPTED_SPLIT, **info},
        )


class FaultyScriptedEnv(ScriptedEnv):
    """A ScriptedEnv that misbehaves on cue, in `step` and in reset prefixes alike.

    "crash" ends the process at once (os._exit, as a segfaulting engine would: no cleanup, no
    exception), "hang" sleeps for an hour (a deadlocked engine), "raise" raises RuntimeError.
    """

    def _advance(self, action: str) -> str:
        if action == CRASH:
            os._exit(CRASH_EXIT_CODE)
        if action == HANG:
            time.sleep(3600)
        if action == RAISE:
            raise RuntimeError(f"scripted failure in game {self.game_id}")
        return super()._advance(action)


def scripted_game(index: int) -> GameSpec:
    """A GameSpec naming scripted game `index`; no file behind it."""
    return GameSpec(f"{SCRIPTED_SPLIT}/{index}", SCRIPTED_SPLIT, SCRIPTED_SPLIT, path="")


def scripted_solution(game_id: str) -> list[str]:
    """A deterministic 2-4 command solution per game id, so different games play differently."""
    n = 2 + zlib.crc32(game_id.encode()) % 3
    return [f"go to shelf {k + 1}" for k in range(n - 1)] + [f"open box {n}"]


def make_scripted_env(spec: EpisodeSpec) -> ScriptedEnv:
    """Pool factory: the scripted game named by `spec.game.game_id`."""
    game_id = spec.game.game_id
    return ScriptedEnv(scripted_solution(game_id), max_steps=spec.max_steps, game_id=game_id)


def make_faulty_env(spec: EpisodeSpec) -> FaultyScriptedEnv:
    """Pool factory: like make_scripted_env, with the crash/hang/raise commands armed."""
    game_id = spec.game.game_id
    return FaultyScriptedEnv(scripted_solution(game_id), max_steps=spec.max_steps, game_id=game_id)
