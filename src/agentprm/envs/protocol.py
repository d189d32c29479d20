"""The text-environment contract every environment implements (Gymnasium-like, text in/text out).

    obs = env.reset(prefix=())            # Observation: task, text, admissible actions, info
    obs, reward, done, info = env.step(a) # StepResult unpacks like a tuple

Semantics, which rollouts, targets and the trajectory format rely on:
- One *turn* = the agent reads an Observation and emits one action string; `step` returns the next one.
- Any string is a legal `step` argument. A non-admissible command still costs a step (the engine
  answers e.g. "Nothing happens."); `info["admissible"]` records whether it was in the list.
- The outcome reward arrives on the step that ends the episode: 1.0 if `info["won"]` else 0.0.
- `done` is True on a win or when the step budget runs out; `info["truncated"]` marks the latter
  (a cut-off episode counts as a loss with reward 0).
- `reset(prefix=[...])` replays actions before handing control over, to start from a state along a
  demonstration (reset-distribution exploration, lookahead). Prefix steps do not count toward the
  step budget of the episode that follows. The replayed turns are part of the episode's history:
  `info["prefix_turns"]` lists (observation seen before the action, action) for each of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable


@dataclass
class Observation:
    """What the agent sees at the start of a turn."""

    task: str
    """The goal in words ("put a clean apple in fridge.")."""
    text: str
    """The engine's feedback to the last action (the room description after a reset)."""
    admissible_actions: list[str]
    """Commands the engine would accept now; the agent may still send anything."""
    info: dict[str, Any] = field(default_factory=dict)


class StepResult(NamedTuple):
    observation: Observation
    reward: float
    done: bool
    info: dict[str, Any]


@runtime_checkable
class TextEnv(Protocol):
    def reset(self, prefix: Sequence[str] = ()) -> Observation: ...

    def step(self, action: str) -> StepResult: ...

    def close(self) -> None: ...


def check_env(env: TextEnv, actions: Sequence[str] | None = None) -> None:
    """Run a short episode and assert the contract holds; for people adding an environment.

    Plays `actions` (default: always the first admissible action) until done or 5 steps, and raises
    AssertionError naming the broken rule.
    """
    obs = env.reset()
    _check_observation(obs, "reset")
    plan = list(actions) if actions is not None else None
    for t in range(len(plan) if plan is not None else 5):
        action = plan[t] if plan is not None else (obs.admissible_actions or ["look"])[0]
        result = env.step(action)
        assert isinstance(result, StepResult), "step must return a StepResult"
        _check_observation(result.observation, f"step {t}")
        assert isinstance(result.reward, float), f"step {t}: reward must be a float"
        assert isinstance(result.done, bool), f"step {t}: done must be a bool"
        assert "won" in result.info, f"step {t}: info must carry 'won'"
        assert "admissible" in result.info, f"step {t}: info must carry 'admissible'"
        if result.reward != 0.0:
            assert result.done, f"step {t}: outcome reward only on the final step"
        obs = result.observation
        if result.done:
            break


def _check_observation(obs: Observation, where: str) -> None:
    assert isinstance(obs, Observation), f"{where}: must return an Observation"
    assert isinstance(obs.task, str) and obs.task, f"{where}: task text must be a non-empty str"
    assert isinstance(obs.text, str), f"{where}: observation text must be a str"
    assert all(isinstance(a, str) for a in obs.admissible_actions), f"{where}: actions must be str"
