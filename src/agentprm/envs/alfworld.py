"""ALFWorld (text) behind the TextEnv protocol, loading one game.tw-pddl directly.

alfworld's own loader only finds games that carry traj_data.json (train games here do not), so we
start each game with textworld plus alfworld's two wrappers: AlfredDemangler gives objects their
readable names ("apple 1"), AlfredInfos is what those wrappers expect to sit under. The game's
grammar already holds the task text.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from agentprm.envs import engine_cache
from agentprm.envs.experts import EXPERTS, HandcodedExpert, planner_action
from agentprm.envs.games import GameSpec, resolve_game
from agentprm.envs.protocol import Observation, StepResult
from agentprm.errors import DataNotFoundError, EngineNotInstalledError

WELCOME = "-= Welcome to TextWorld, ALFRED! =-"
TASK_MARK = "Your task is to: "
DEFAULT_MAX_STEPS = 30


def _engine():
    try:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
    except ImportError as e:  # pragma: no cover - depends on the machine
        raise EngineNotInstalledError(
            f"the ALFWorld engine is not installed ({e.name} missing): run scripts/setup.sh "
            "or `pip install alfworld`"
        ) from e
    engine_cache.install()
    return textworld, AlfredDemangler, AlfredInfos


def split_intro(feedback: str) -> tuple[str, str]:
    """(task, room description) from the feedback a reset returns."""
    text = feedback.replace(WELCOME, "").strip()
    head, sep, task = text.partition(TASK_MARK)
    if not sep:
        return "", text
    return task.strip(), head.strip()


class ALFWorldEnv:
    """One ALFWorld game. Reward 1.0 on a win, else 0.0; `max_steps` turns per episode.

    `expert` ("handcoded" or "planner", see `envs.experts`) adds the expert's next action to every
    observation's info as `expert_action` (None when it has nothing admissible to suggest)."""

    def __init__(self, game: GameSpec | str, max_steps: int = DEFAULT_MAX_STEPS, expert: str | None = None):
        self.game = resolve_game(game) if isinstance(game, str) else game
        self.max_steps = max_steps
        if expert is not None and expert not in EXPERTS:
            raise ValueError(f"unknown expert {expert!r}; choose one of {', '.join(EXPERTS)}")
        self.expert = expert
        self._handcoded: HandcodedExpert | None = None
        self._env: Any = None
        self._task = ""
        self._steps = 0
        self._done = True

    @cached_property
    def game_data(self) -> dict[str, Any]:
        try:
            with open(self.game.path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError) as e:  # ValueError: bad JSON, bytes that are not UTF-8
            raise DataNotFoundError(f"cannot read game file {self.game.path}: {e}") from e

    @property
    def walkthrough(self) -> list[str]:
        """The expert's command list; replaying it wins the game."""
        return list(self.game_data["walkthrough"])

    def _start(self) -> Any:
        textworld, demangler, infos_wrapper = _engine()
        request = textworld.EnvInfos(won=True, admissible_commands=True, facts=self.expert == "handcoded",
                                     policy_commands=self.expert == "planner")
        return textworld.start(self.game.path, request_infos=request, wrappers=[demangler(), infos_wrapper])

    def reset(self, prefix: Sequence[str] = ()) -> Observation:
        with engine_cache.replanning(self.expert == "planner"):
            if self._env is None:
                self._env = self._start()
            state = self._env.reset()
        self._task, text = split_intro(state.feedback)
        won = bool(state["won"])
        suggestion = self._expert_start(state)
        turns: list[tuple[str, str]] = []
        for action in prefix:
            turns.append((text, action))
            state, _, _ = self._env.step(action)
            won = bool(state["won"])
            text = state.feedback.strip()
            suggestion = self._expert_after(state, action)
            if won:
                break
        self._steps = 0
        self._done = won
        return self._observation(text, state, suggestion, prefix_len=len(turns), prefix_turns=turns, won=won)

    def step(self, action: str) -> StepResult:
        if self._done:
            raise RuntimeError("step() after the episode ended: call reset() first")
        admissible = action in self._last_admissible
        state, _, _ = self._env.step(action)
        self._steps += 1
        won = bool(state["won"])
        truncated = not won and self._steps >= self.max_steps
        self._done = won or truncated
        info = {"won": won, "truncated": truncated, "admissible": admissible, "steps": self._steps}
        suggestion = None if self._done else self._expert_after(state, action)
        obs = self._observation(state.feedback.strip(), state, suggestion, won=won)
        return StepResult(obs, 1.0 if won else 0.0, self._done, info)

    def _expert_start(self, state: Any) -> str | None:
        if self.expert == "handcoded":
            self._handcoded = HandcodedExpert(self.game)
            return self._handcoded.start(state)
        return planner_action(state) if self.expert == "planner" else None

    def _expert_after(self, state: Any, action: str) -> str | None:
        if self._handcoded is not None:
            return self._handcoded.after_step(state, action)
        return planner_action(state) if self.expert == "planner" else None

    def _observation(self, text: str, state: Any, expert_action: str | None = None, **info: Any) -> Observation:
        self._last_admissible = list(state["admissible_commands"] or [])
        extra = {"expert_action": expert_action} if self.expert else {}
        return Observation(
            task=self._task,
            text=text,
            admissible_actions=self._last_admissible,
            info={"game_id": self.game.game_id, "task_type": self.game.task_type, **extra, **info},
        )

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            engine_cache.release_lib(self._env)
            self._env = None


def read_walkthroughs(games: Sequence[GameSpec]) -> dict[str, list[str]]:
    """Every game's walkthrough by game id. A game whose file cannot be read (empty, not UTF-8, not
    JSON, no walkthrough) is left out with a warning, so one damaged file costs one game, not the run."""
    plans: dict[str, list[str]] = {}
    for g in games:
        try:
            plans[g.game_id] = ALFWorldEnv(g).walkthrough
        except (DataNotFoundError, KeyError, TypeError) as e:
            warnings.warn(f"skipping game {g.game_id}: {e}", stacklevel=2)
    return plans
