"""Best-of-N at test time: sample N answers per turn, the PRM scores each distinct action, act on the best.

Identical actions (after parsing) are scored once: with a small policy many of the N samples agree,
and the PRM pass is the expensive part. Ties go to the first-sampled action.
"""

from __future__ import annotations

from typing import Protocol

from agentprm.agents.base import AgentOutput
from agentprm.prompts import TurnContext
from agentprm.train.losses import best_of_n_choice


class Sampler(Protocol):
    policy_id: str

    def sample(self, contexts: list[TurnContext], n: int) -> list[list[AgentOutput]]: ...


class Scorer(Protocol):
    def score(self, contexts: list[TurnContext], actions: list[str], batch_size: int = ...) -> list[float]: ...


def distinct_by_action(samples: list[AgentOutput]) -> list[AgentOutput]:
    seen: dict[str, AgentOutput] = {}
    for s in samples:
        seen.setdefault(s.action, s)
    return list(seen.values())


class BestOfNAgent:
    """An Agent that lets a PRM choose among a policy's N samples (the paper's Best-of-N)."""

    def __init__(self, policy: Sampler, prm: Scorer, n: int, prm_batch_size: int = 16):
        self.policy, self.prm, self.n, self.prm_batch_size = policy, prm, n, prm_batch_size
        self.last_scores: list[list[float]] = []

    @property
    def policy_id(self) -> str:
        return f"{self.policy.policy_id}+bon{self.n}"

    def candidates(self, contexts: list[TurnContext]) -> list[list[AgentOutput]]:
        """The distinct actions among the policy's N samples per context, in sampling order."""
        return [distinct_by_action(s) for s in self.policy.sample(contexts, self.n)]

    def score_pairs(self, contexts: list[TurnContext], actions: list[str]) -> list[float]:
        """The PRM's value of each (context, action) pair, in one batched pass."""
        return self.prm.score(contexts, actions, batch_size=self.prm_batch_size) if actions else []

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]:
        candidates = self.candidates(contexts)
        flat_ctx = [ctx for ctx, cands in zip(contexts, candidates, strict=True) for _ in cands]
        flat_act = [c.action for cands in candidates for c in cands]
        scores = self.score_pairs(flat_ctx, flat_act)
        picked, self.last_scores, i = [], [], 0
        for cands in candidates:
            mine = list(scores[i : i + len(cands)])
            i += len(cands)
            self.last_scores.append(mine)
            picked.append(cands[best_of_n_choice(mine)])
        return picked
