"""Preference pairs of the online DPO step: the PRM's higher-scored sample is chosen."""

from __future__ import annotations

from agentprm.agents.base import AgentOutput
from agentprm.train.dpo import preference_pairs


def out(a: str) -> AgentOutput:
    return AgentOutput(a, f"ACTION: {a}")


def test_pairs_order_by_prm_and_drop_ties_and_duplicates():
    samples = [[out("x"), out("y")], [out("x"), out("x")], [out("p"), out("q")], [out("m"), out("n")]]
    scores = [[0.2, 0.6], [0.1, 0.9], [0.50, 0.52], [0.8, 0.3]]
    pairs = preference_pairs(samples, scores, min_margin=0.05)
    got = [(i, c.action, r.action, sc, sr) for i, c, r, sc, sr in pairs]
    # state 1: same action twice (no preference); state 2: gap 0.02 <= margin
    assert got == [(0, "y", "x", 0.6, 0.2), (3, "m", "n", 0.8, 0.3)]


def test_with_more_samples_the_best_and_worst_distinct_actions_pair_up():
    samples = [[out("a"), out("b"), out("a"), out("c")], [out("a"), out("a"), out("a")]]
    scores = [[0.5, 0.9, 0.5, 0.1], [0.2, 0.9, 0.4]]
    got = [(i, c.action, r.action, sc, sr) for i, c, r, sc, sr in preference_pairs(samples, scores, 0.0)]
    assert got == [(0, "b", "c", 0.9, 0.1)]  # state 1: one action only, nothing to prefer
