"""Best-of-N picks the PRM's argmax among distinct sampled answers (as the PRM reads them)."""

from __future__ import annotations

import pytest
import torch

from agentprm.agents.base import AgentOutput
from agentprm.agents.best_of_n import BestOfNAgent
from agentprm.prompts import TurnContext, format_answer
from agentprm.train.prm import PRM


class FixedSampler:
    policy_id = "fixed"

    def __init__(self, actions: list[list[str]]):
        self.actions = actions

    def sample(self, contexts, n):
        assert n == 4
        return [[AgentOutput(a, f"ACTION: {a}") for a in acts] for acts in self.actions]


class TableScorer:
    """Reads the action alone (a PRM with reads="action")."""

    def __init__(self, table: dict[str, float]):
        self.table, self.calls = table, []

    def answer(self, action, reason=None):
        return format_answer(action)

    def score(self, contexts, actions, batch_size=16, reasons=None):
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


class CountingSampler:
    """Answers `first` n times; records the n it was asked for."""

    def __init__(self, name: str, first: list[str], rest: list[str] | None = None):
        self.policy_id, self.first, self.rest, self.asked = name, first, rest or [], []

    def sample(self, contexts, n):
        self.asked.append(n)
        return [[AgentOutput(a, f"ACTION: {a}") for a in [f, *self.rest][:n]] for f in self.first]


def test_with_a_greedy_twin_the_greedy_answer_is_one_of_n_and_wins_ties():
    ctxs = [TurnContext("t", "o", ["a", "b", "c"]), TurnContext("t", "o2", ["a", "b", "c"])]
    sampled = CountingSampler("lm", ["b", "c"], ["a", "b"])  # state 1: b, a, b; state 2: c, a, b
    greedy = CountingSampler("lm", ["a", "a"])
    scorer = TableScorer({"a": 0.5, "b": 0.5, "c": 0.9})
    agent = BestOfNAgent(sampled, scorer, n=4, greedy=greedy)
    picked = agent.act(ctxs)
    assert greedy.asked == [1] and sampled.asked == [3]  # N = 4 candidates: greedy + 3 samples
    # state 1: a (greedy) ties b at 0.5 and keeps it; state 2: the sample c scores higher than greedy a
    assert [p.action for p in picked] == ["a", "c"]
    assert agent.last_scores == [[0.5, 0.5], [0.5, 0.9, 0.5]]
    assert agent.policy_id == "lm+bon4g"
    with pytest.raises(Exception, match="N >= 2"):
        BestOfNAgent(sampled, scorer, n=1, greedy=greedy)


class LogprobSampler:
    """The same two candidates at every state, with the policy's log-probabilities."""

    policy_id = "lp"

    def __init__(self, cands: list[tuple[str, float | None]]):
        self.cands = cands

    def sample(self, contexts, n):
        return [[AgentOutput(a, f"ACTION: {a}", logprob=lp) for a, lp in self.cands] for _ in contexts]


@pytest.mark.parametrize(("beta", "want"), [(0.0, "b"), (0.03, "b"), (0.1, "a"), (1.0, "a")])
def test_beta_weighs_the_prm_value_against_log_pi(beta, want):
    # Q(a) = 0.6, log π(a) = -0.5; Q(b) = 0.7, log π(b) = -3.0. Q + beta·log π:
    # beta 0.03: a 0.585, b 0.61 -> b;  beta 0.1: a 0.55, b 0.40 -> a;  beta 1: a 0.1, b -2.3 -> a
    agent = BestOfNAgent(LogprobSampler([("a", -0.5), ("b", -3.0)]), TableScorer({"a": 0.6, "b": 0.7}), n=4,
                         beta=beta)
    assert agent.act([TurnContext("t", "o", ["a", "b"])])[0].action == want
    assert agent.last_scores == [[0.6, 0.7]]  # the PRM's own values, as before
    assert agent.policy_id == ("lp+bon4" if beta == 0 else f"lp+bon4b{beta:g}")


def test_beta_needs_log_probabilities_and_a_non_negative_value():
    agent = BestOfNAgent(LogprobSampler([("a", None), ("b", -1.0)]), TableScorer({"a": 0.6, "b": 0.7}), n=2,
                         beta=0.1)
    with pytest.raises(ValueError, match="log-probability"):
        agent.act([TurnContext("t", "o", ["a", "b"])])
    with pytest.raises(Exception, match="must be >= 0"):
        BestOfNAgent(LogprobSampler([]), TableScorer({}), n=2, beta=-0.1)


REASONED = (AgentOutput("look", "REASON: check the room\nACTION: look", "check the room"),
            AgentOutput("go to fridge 1", "REASON: mugs go in fridges\nACTION: go to fridge 1", "mugs go in fridges"),
            AgentOutput("look", "REASON: nothing else to do\nACTION: look", "nothing else to do"),
            AgentOutput("look", "ACTION: look"))
"""Two reasons for "look", one bare "look", one other action."""


class ReasonedSampler:
    policy_id = "reasoned"

    def sample(self, contexts, n):
        return [list(REASONED) for _ in contexts]


@pytest.mark.parametrize("reads", ["answer", "action"])
def test_best_of_n_scores_what_the_prm_reads(model_tok, reads, monkeypatch):
    model, tok = model_tok
    prm = PRM(model, tok, history_window=2, max_length=512, reads=reads)
    with torch.no_grad():
        torch.nn.init.normal_(prm.head.weight, generator=torch.Generator().manual_seed(0), std=0.5)
    read: list[str] = []
    token_ids = prm.token_ids
    monkeypatch.setattr(prm, "token_ids", lambda texts: read.extend(texts) or token_ids(texts))
    ctx = TurnContext("put a mug in fridge", "You see a mug.", ["go to fridge 1", "look"])
    agent = BestOfNAgent(ReasonedSampler(), prm, n=4)
    picked = agent.act([ctx])[0]
    if reads == "answer":  # every distinct answer is scored on its whole text
        cands = REASONED
        answers = [format_answer(o.action, o.reason) for o in cands]
        assert answers[0] == "REASON: check the room\nACTION: look" and answers[3] == "ACTION: look"
    else:  # one candidate per action, read as `ACTION: a`
        cands = REASONED[:2]
        answers = ["ACTION: look", "ACTION: go to fridge 1"]
    assert [a for a in read if not a.startswith("<")] == answers  # the prompts start with the chat template
    with torch.no_grad():  # the scores are those of the plain forward pass on prompt + answer text
        prompt = prm.prompts([ctx])[0]
        z = prm(*prm.collate(prm.token_ids([prompt + a for a in answers])))
    assert agent.last_scores[0] == pytest.approx(torch.sigmoid(z).tolist(), abs=1e-4)
    assert picked is cands[max(range(len(cands)), key=lambda i: (agent.last_scores[0][i], -i))]
