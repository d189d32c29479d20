"""The paper's losses against values worked out by hand (log 2 = 0.693147, log(4/3) = 0.287682,
log(1 + e) = 1.313262, log(1 + e^-0.1) = 0.644397)."""

from __future__ import annotations

import math

import pytest
import torch

from agentprm.train.losses import (
    best_of_n_choice,
    bradley_terry,
    discounted_return,
    dpo_loss,
    inverse_prm_loss,
    soft_bce,
)

LOG2 = math.log(2)
LOG4_3 = math.log(4 / 3)  # −log σ(log 3) = −log 0.75
T = torch.tensor


def test_discounted_return_eq1() -> None:
    assert discounted_return(T=3, t=0, R=1.0, gamma=0.5) == 0.25  # two more actions before the outcome
    assert discounted_return(T=3, t=2, R=1.0, gamma=0.5) == 1.0  # the winning action itself
    assert discounted_return(T=3, t=0, R=0.0, gamma=0.5) == 0.0  # loss (or cut off)
    assert discounted_return(T=4, t=1, R=1.0, gamma=0.9) == pytest.approx(0.81)
    with pytest.raises(ValueError, match="outside"):
        discounted_return(T=3, t=3, R=1.0, gamma=0.5)


def test_soft_bce_eq4_hand_values() -> None:
    assert soft_bce(T([0.0]), T([0.3])).item() == pytest.approx(LOG2)  # σ=0.5 whatever Q̂
    assert soft_bce(T([math.log(3)]), T([1.0])).item() == pytest.approx(LOG4_3, abs=1e-6)
    # Q̂ = 0.25, σ = 0.75: −[0.25 log 0.75 + 0.75 log 0.25] = 0.071921 + 1.039721
    assert soft_bce(T([math.log(3)]), T([0.25])).item() == pytest.approx(1.111641, abs=1e-5)
    assert soft_bce(T([0.0, math.log(3)]), T([0.3, 1.0])).item() == pytest.approx((LOG2 + LOG4_3) / 2)


def test_soft_bce_is_stable_and_minimised_at_q() -> None:
    assert soft_bce(T([1000.0, -1000.0]), T([0.0, 1.0])).item() == pytest.approx(1000.0)
    z = torch.tensor([math.log(0.3 / 0.7)], requires_grad=True)  # σ(z) = 0.3
    soft_bce(z, T([0.3])).backward()
    assert z.grad is not None and abs(z.grad.item()) < 1e-6


def test_bradley_terry_hand_values() -> None:
    assert bradley_terry(T([2.0]), T([2.0])).item() == pytest.approx(LOG2)
    assert bradley_terry(T([math.log(3), 5.0]), T([0.0, 5.0])).item() == pytest.approx((LOG4_3 + LOG2) / 2)
    assert bradley_terry(T([-1000.0]), T([0.0])).item() == pytest.approx(1000.0)


def test_dpo_hand_values() -> None:
    # chosen log-ratio −1 − (−1.5) = 0.5, rejected −2 − (−1.5) = −0.5 → logit 0.1·1.0
    loss, rc, rr = dpo_loss(T([-1.0]), T([-2.0]), T([-1.5]), T([-1.5]), beta=0.1)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.1)), abs=1e-6)  # 0.644397
    assert rc.item() == pytest.approx(0.05) and rr.item() == pytest.approx(-0.05)
    same, _, _ = dpo_loss(T([-1.0]), T([-1.0]), T([-1.0]), T([-1.0]), beta=0.5)
    assert same.item() == pytest.approx(LOG2)


def test_dpo_step_raises_chosen_logprob() -> None:
    """A tiny softmax policy over 3 answers: one SGD step on DPO moves mass to the chosen one."""
    theta = torch.zeros(3, requires_grad=True)
    ref = torch.log_softmax(torch.zeros(3), -1)
    chosen, rejected = 0, 1
    before = torch.log_softmax(theta, -1).detach().clone()
    logp = torch.log_softmax(theta, -1)
    loss, _, _ = dpo_loss(logp[[chosen]], logp[[rejected]], ref[[chosen]], ref[[rejected]], beta=1.0)
    loss.backward()
    with torch.no_grad():
        theta -= 0.5 * theta.grad
    after = torch.log_softmax(theta, -1)
    assert after[chosen] > before[chosen] and after[rejected] < before[rejected]
    assert dpo_loss(after[[chosen]], after[[rejected]], ref[[chosen]], ref[[rejected]], 1.0)[0] < loss


def test_inverse_prm_hand_values() -> None:
    # expert: r = 1 − 0.5·2 = 0 → softplus(0) = log 2; learner is terminal: r = 1 − 0 → log(1 + e)
    loss = inverse_prm_loss(T([1.0]), T([2.0]), T([1.0]), T([2.0]), 0.5, T([False]), T([True]))
    assert loss.item() == pytest.approx(LOG2 + math.log(1 + math.e), abs=1e-6)  # 2.006409
    # sides averaged separately: expert r = [0, log 3] → (log 2 + log 4/3)/2; learner r = 0 → log 2
    loss = inverse_prm_loss(T([0.0, math.log(3)]), T([0.0, 0.0]), T([0.0]), T([7.0]), 0.9,
                            T([False, True]), T([True]))
    assert loss.item() == pytest.approx((LOG2 + LOG4_3) / 2 + LOG2, abs=1e-6)


def test_inverse_prm_gradient_raises_expert_lowers_learner() -> None:
    q_e, q_l = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    done = torch.zeros(2, dtype=torch.bool)
    inverse_prm_loss(q_e, torch.zeros(2), q_l, torch.zeros(2), 0.9, done, done).backward()
    assert q_e.grad is not None and q_l.grad is not None
    assert (q_e.grad < 0).all() and (q_l.grad > 0).all()  # descent raises expert Q, lowers learner Q


def test_best_of_n_choice() -> None:
    assert best_of_n_choice([0.1, 0.9, 0.9]) == 1  # first of the tied best
    assert best_of_n_choice([0.5, 0.5]) == 0
    assert best_of_n_choice([-3.0, -1.0, -2.0]) == 1
    assert best_of_n_choice([float("nan"), 0.2]) == 1
    with pytest.raises(ValueError):
        best_of_n_choice([])
