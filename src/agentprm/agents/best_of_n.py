"""Best-of-N at test time: sample N answers per turn, the PRM scores each distinct answer, act on the best.

What counts as distinct is what the PRM reads (`PRM.answer`): the whole answer (reason + action) for a
PRM that reads it, the action alone for one that reads only the action. Identical answers are scored
once: with a small policy many of the N samples agree, and the PRM pass is the expensive part. Ties go
to the first-sampled answer.

With a greedy twin of the policy (`greedy=`), the first of the N candidates is the policy's own greedy
answer and N-1 are sampled: the PRM then moves the agent off what greedy π would do only where it scores
a sample strictly higher. Sampling all N at temperature 1 also spends candidates on answers worse than
greedy's, and at this project's CPU scale that lost more than the PRM won back (README).

With `beta` > 0 the choice is KL-regularised: the candidate with the highest Q(s,a) + beta·log π(a|s), the
mode of π*(a|s) ∝ π(a|s)·exp(Q(s,a)/beta), which is the policy the online-DPO step aims at with its KL
leash beta to π. A small PRM's scores of answers π rarely gives are poor (it learned from π's own
rollouts), and beta makes the PRM overrule π only where the Q gain pays for the drop in log π. beta = 0
is the paper's plain Best-of-N; a large beta gives back π's own likeliest candidate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agentprm.agents.base import AgentOutput
from agentprm.errors import ConfigError
from agentprm.prompts import TurnContext
from agentprm.train.losses import best_of_n_choice


class Sampler(Protocol):
    policy_id: str

    def sample(self, contexts: list[TurnContext], n: int) -> list[list[AgentOutput]]: ...


class Scorer(Protocol):
    def answer(self, action: str, reason: str | None = None) -> str:
        """The answer text the scorer reads for (action, reason)."""
        ...

    def score(self, contexts: list[TurnContext], actions: list[str], batch_size: int = ...,
              reasons: list[str | None] | None = ...) -> list[float]: ...


def distinct(samples: list[AgentOutput], key: Callable[[AgentOutput], str]) -> list[AgentOutput]:
    """The first sample of each `key`, in sampling order."""
    seen: dict[str, AgentOutput] = {}
    for s in samples:
        seen.setdefault(key(s), s)
    return list(seen.values())


class BestOfNAgent:
    """An Agent that lets a PRM choose among a policy's N samples (the paper's Best-of-N)."""

    def __init__(self, policy: Sampler, prm: Scorer, n: int, prm_batch_size: int = 16, greedy: Sampler | None = None,
                 beta: float = 0.0):
        if getattr(prm, "reads", None) == "state":  # a value model gives every candidate the same score
            raise ConfigError("Best-of-N needs a PRM that reads actions; this one reads the state alone (a value "
                              "model for shaping, `train-prm --reads state`)")
        if greedy is not None and n < 2:
            raise ConfigError("Best-of-N with the greedy answer among the candidates needs N >= 2")
        self.policy, self.prm, self.n, self.prm_batch_size = policy, prm, n, prm_batch_size
        if not beta >= 0:
            raise ConfigError(f"Best-of-N beta {beta}: the weight of log π must be >= 0 (0: plain Best-of-N)")
        self.greedy, self.beta = greedy, beta
        self.last_scores: list[list[float]] = []

    @property
    def policy_id(self) -> str:
        beta = f"b{self.beta:g}" if self.beta else ""
        return f"{self.policy.policy_id}+bon{self.n}{'g' if self.greedy is not None else ''}{beta}"

    def candidates(self, contexts: list[TurnContext], by_action: bool = False) -> list[list[AgentOutput]]:
        """The distinct answers among the policy's N samples per context, in sampling order: distinct by
        what the PRM reads, or by the action alone with `by_action` (the look-ahead branches per action)."""
        def read(o: AgentOutput) -> str:
            return o.action if by_action else self.prm.answer(o.action, o.reason)

        if self.greedy is None:
            return [distinct(s, read) for s in self.policy.sample(contexts, self.n)]
        firsts = self.greedy.sample(contexts, 1)
        rest = self.policy.sample(contexts, self.n - 1)
        return [distinct(f + s, read) for f, s in zip(firsts, rest, strict=True)]

    def score_pairs(self, contexts: list[TurnContext], actions: list[str],
                    reasons: list[str | None] | None = None) -> list[float]:
        """The PRM's value of each (context, answer) pair, in one batched pass."""
        if not actions:
            return []
        return self.prm.score(contexts, actions, batch_size=self.prm_batch_size, reasons=reasons)

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]:
        candidates = self.candidates(contexts)
        flat_ctx = [ctx for ctx, cands in zip(contexts, candidates, strict=True) for _ in cands]
        flat = [c for cands in candidates for c in cands]
        scores = self.score_pairs(flat_ctx, [c.action for c in flat], [c.reason for c in flat])
        picked, self.last_scores, i = [], [], 0
        for cands in candidates:
            mine = list(scores[i : i + len(cands)])
            i += len(cands)
            self.last_scores.append(mine)
            picked.append(cands[best_of_n_choice(regularised(mine, [c.logprob for c in cands], self.beta))])
        return picked


def regularised(q: list[float], logprobs: list[float | None], beta: float) -> list[float]:
    """Q + beta·log π per candidate (Q alone at beta 0). A candidate without a log-probability cannot be
    weighed against the others, so with beta > 0 it is an error, not a silent 0."""
    if not beta:
        return q
    if any(lp is None for lp in logprobs):
        raise ValueError("Best-of-N with beta > 0 needs the policy's log-probability of every candidate")
    return [v + beta * float(lp) for v, lp in zip(q, logprobs, strict=True)]  # type: ignore[arg-type]
