"""Seeded sampling (agents.seeding): Gumbel-max draws follow softmax(logits / T) within the top-p
nucleus, and a rollout's draw depends on its episode and turn only, never on the batch it is in."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from agentprm.agents.policy import LMPolicy, PolicyConfig
from agentprm.agents.seeding import RowSampler, row_seed, top_p_mask
from agentprm.prompts import Turn, TurnContext

ACTIONS = ["look", "go to desk 1", "go to desk 10", "take mug 1 from desk 1", "open drawer 2"]


def test_draws_follow_the_tempered_softmax():
    # logits (0, ln 3): p = (1/4, 3/4) at T = 1; at T = 2 the logits halve: p1 = √3 / (1 + √3) = 0.634
    n = 20_000
    sampler = RowSampler(range(n))
    logits = torch.tensor([[0.0, float(torch.log(torch.tensor(3.0)))]]).repeat(n, 1)
    assert sampler.choose(logits, 1.0).float().mean().item() == pytest.approx(0.75, abs=0.012)
    assert RowSampler(range(n)).choose(logits, 2.0).float().mean().item() == pytest.approx(0.634, abs=0.012)
    assert sampler.choose(logits, 0.0).tolist() == [1] * n  # temperature 0: greedy


def test_top_p_keeps_the_nucleus_only():
    # p = (0.6, 0.3, 0.1): top_p 0.7 keeps tokens 0 and 1 (0.6 < 0.7 ≤ 0.9), then draws them 2 : 1
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]]))
    assert torch.isinf(top_p_mask(logits, 0.7)).tolist() == [[False, False, True]]
    assert torch.isinf(top_p_mask(logits, 0.5)).tolist() == [[False, True, True]]  # the top token stays
    picks = RowSampler(range(9000)).choose(logits.repeat(9000, 1), 1.0, top_p=0.7)
    assert (picks == 2).sum().item() == 0
    assert (picks == 0).float().mean().item() == pytest.approx(2 / 3, abs=0.015)


def test_row_seed_is_stable_and_keyed():
    assert row_seed(0, "g#0/0|3|0") == row_seed(0, "g#0/0|3|0")
    assert len({row_seed(0, "a"), row_seed(1, "a"), row_seed(0, "b")}) == 3
    assert 0 <= row_seed(7, "x") < 2**63


def ctx(k: int, key: str) -> TurnContext:
    return TurnContext(task="put a mug in the sink", observation="You are in the kitchen. " * k,
                       admissible_actions=ACTIONS[: 2 + k], history=[Turn(f"obs {i}", "look") for i in range(k)],
                       episode_key=key)


@pytest.mark.parametrize("mode", ["generate", "constrained", "score"])
def test_a_draw_does_not_depend_on_the_batch_or_the_calls_before(model_tok, mode):
    """Episode B's samples are the same alone, in a batch with A, after other calls, and in another
    order; another episode key draws differently."""
    # hot: the random model is peaked (score mode sums log p over a whole answer: hotter still)
    cfg = PolicyConfig(mode=mode, temperature=50.0 if mode == "score" else 3.0, max_new_tokens=10, seed=4)
    a, b, c = ctx(0, "gameA#0/0"), ctx(3, "gameB#0/0"), ctx(2, "gameC#1/1")
    alone = LMPolicy(*model_tok, cfg).sample([b], 3)[0]
    pol = LMPolicy(*model_tok, cfg)
    pol.sample([a, c], 2)  # calls before: a counter-seeded sampler would now differ
    mixed = pol.sample([c, b, a], 3)[1]
    assert [o.raw_output for o in mixed] == [o.raw_output for o in alone]
    other = LMPolicy(*model_tok, cfg).sample([dataclasses.replace(b, episode_key="gameB#1/1")], 3)[0]
    draws = [o.raw_output for o in alone] + [o.raw_output for o in other]
    assert len(set(draws)) > 1
