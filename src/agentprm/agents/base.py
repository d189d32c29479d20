"""The agent contract: a batch of TurnContexts in, one AgentOutput per context out.

Batching is the point: an LM policy serves every episode in flight with one generate call.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agentprm.prompts import TurnContext


@dataclass
class AgentOutput:
    action: str
    """The command sent to the environment."""
    raw_output: str = ""
    """The model's text, before parsing (for a scripted agent: the action itself)."""
    reason: str | None = None
    logprob: float | None = None
    """Sum of the answer tokens' log-probabilities under the acting model, if it has one."""
    matched: bool = True
    """True when the parsed command exactly matched an admissible action."""
    stats: dict[str, float] = field(default_factory=dict)
    """What choosing this action cost beyond one policy call (namespaced counters, e.g. a look-ahead's
    `lookahead/extra_env_steps`). Rollouts sum them per episode into `Episode.meta["agent_stats"]`, so
    they survive a resume; eval sums them over episodes into summary.json."""


@runtime_checkable
class Agent(Protocol):
    policy_id: str
    """Recorded in every trajectory this agent produces."""

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]: ...


class EnvExpertAgent:
    """Acts with the action of the expert running inside the environment (`ALFWorldEnv(expert=...)`,
    which rollouts start with `expert=`); "look" when the expert has nothing admissible to say.

    `noise` > 0 makes it a DART demonstrator (Laskey et al., 2017): with that probability it takes a
    random admissible action instead, while every state keeps the expert's action as its label
    (`Step.expert_action`). The expert then shows how it recovers from states it would never reach
    itself, which a policy cloned from clean demos never sees. Seeded by game and turn."""

    def __init__(self, expert: str, noise: float = 0.0, seed: int = 0):
        self.expert, self.noise, self.seed = expert, noise, seed
        self.policy_id = f"expert:{expert}" + (f"+noise{noise:g}" if noise else "")

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]:
        outs = []
        for c in contexts:
            action = c.expert_action or "look"
            rng = random.Random(f"{self.seed}:{c.game_id}:{len(c.history)}")
            if self.noise and c.admissible_actions and rng.random() < self.noise:
                action = rng.choice(c.admissible_actions)
            outs.append(AgentOutput(action=action, raw_output=f"ACTION: {action}"))
        return outs


class ExpertAgent:
    """Replays each game's walkthrough, the planner's plan from the start (it never searches: it
    knows where everything is)."""

    policy_id = "expert"

    def __init__(self, plans: dict[str, list[str]]):
        self.plans = plans

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]:
        outs = []
        for ctx in contexts:
            plan = self.plans[ctx.game_id]
            t = len(ctx.history)  # the history holds every action since the start, replayed ones too
            action = plan[t] if t < len(plan) else "look"
            outs.append(AgentOutput(action=action, raw_output=f"ACTION: {action}"))
        return outs
