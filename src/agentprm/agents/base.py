"""The agent contract: a batch of TurnContexts in, one AgentOutput per context out.

Batching is the point: an LM policy serves every episode in flight with one generate call.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@runtime_checkable
class Agent(Protocol):
    policy_id: str
    """Recorded in every trajectory this agent produces."""

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]: ...


class EnvExpertAgent:
    """Acts with the action of the expert running inside the environment (`ALFWorldEnv(expert=...)`,
    which rollouts start with `expert=`); "look" when the expert has nothing admissible to say."""

    def __init__(self, expert: str):
        self.expert = expert
        self.policy_id = f"expert:{expert}"

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]:
        return [AgentOutput(action=a, raw_output=f"ACTION: {a}") for a in (c.expert_action or "look" for c in contexts)]


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
