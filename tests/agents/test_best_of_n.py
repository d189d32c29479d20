"""Best-of-N picks the PRM's argmax among distinct sampled actions."""

from __future__ import annotations

from agentprm.agents.base import AgentOutput
from agentprm.agents.best_of_n import BestOfNAgent
from agentprm.prompts import TurnContext


class FixedSampler:
    policy_id = "fixed"

    def __init__(self, actions: list[list[str]]):
        self.actions = actions

    def sample(self, contexts, n):
        assert n == 4
        return [[AgentOutput(a, f"ACTION: {a}") for a in acts] for acts in self.actions]


class TableScorer:
    def __init__(self, table: dict[str, float]):
        self.table, self.calls = table, []

    def score(self, contexts, actions, batch_size=16):
        self.calls.append(list(actions))
        return [self.table[a] for a in actions]


def test_best_of_n_takes_the_prm_argmax_and_scores_duplicates_once():
    ctxs = [TurnContext("t", "o", ["a", "b", "c"]), TurnContext("t", "o2", ["a", "b", "c"])]
    sampler = FixedSampler([["a", "b", "a", "c"], ["c", "c", "c", "c"]])
    scorer = TableScorer({"a": 0.2, "b": 0.9, "c": 0.5})
    agent = BestOfNAgent(sampler, scorer, n=4)
    picked = agent.act(ctxs)
    assert [p.action for p in picked] == ["b", "c"]
    assert scorer.calls == [["a", "b", "c", "c"]]  # 3 distinct for the first state, 1 for the second
    assert agent.last_scores == [[0.2, 0.9, 0.5], [0.5]]
    assert agent.policy_id == "fixed+bon4"


def test_ties_go_to_the_first_sample():
    agent = BestOfNAgent(FixedSampler([["b", "a", "b", "b"]]), TableScorer({"a": 0.7, "b": 0.7}), n=4)
    assert agent.act([TurnContext("t", "o", ["a", "b"])])[0].action == "b"
