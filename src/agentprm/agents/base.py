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


class ExpertAgent:
    """Replays each game's walkthrough (the demonstrations for SFT and InversePRM)."""

    policy_id = "expert"

    def __init__(self, plans: dict[str, list[str]]):
        self.plans = plans

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]:
        outs = []
        for ctx in contexts:
            plan = self.plans[ctx.game_id]
            t = ctx.prefix_len + len(ctx.history)
            action = plan[t] if t < len(plan) else "look"
            outs.append(AgentOutput(action=action, raw_output=f"ACTION: {action}"))
        return outs
