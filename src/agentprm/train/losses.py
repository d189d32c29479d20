"""The paper's math as small pure functions (Choudhury 2025, arXiv 2502.10325).

Trainers only orchestrate these; each one is tested against hand-computed values. Every loss takes
raw scores ("logits", real numbers) rather than probabilities, because log σ(z) computed from z via
`logsigmoid`/`softplus` stays finite where log(σ(z)) of a rounded probability would not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def discounted_return(T: int, t: int, R: float, gamma: float) -> float:
    """Monte Carlo target of the action at turn t of a T-turn episode with outcome R (Eq. 1).

    The outcome reward arrives with the last action (turn T−1), so the action at turn t sees it
    discounted T−1−t times: Q̂ = γ^(T−1−t)·R. Discounting from the end (not from the episode start)
    is what makes a short successful episode worth more than a long one at the same state.
    """
    if not 0 <= t < T:
        raise ValueError(f"turn t={t} outside an episode of T={T} turns (need 0 <= t < T)")
    return float(gamma ** (T - 1 - t) * R)


def soft_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft binary cross-entropy of the PRM against Monte Carlo targets Q̂ ∈ [0, 1] (Eq. 4):

        −[Q̂ log σ(z) + (1−Q̂) log(1−σ(z))], averaged over the batch.

    Soft (not 0/1) labels because Q̂ is a discounted success rate; the minimiser is σ(z) = Q̂.
    `binary_cross_entropy_with_logits` evaluates this via log-sum-exp, so it is finite for any z.
    """
    return F.binary_cross_entropy_with_logits(logits.float(), targets.to(logits.device).float())


def bradley_terry(chosen_logits: torch.Tensor, rejected_logits: torch.Tensor) -> torch.Tensor:
    """Relative PRM loss −log σ(z_c − z_r), averaged over pairs (Bradley–Terry preference model).

    Used for pairs of actions at the same state whose Q̂ differ by at least δ: only the ordering
    of the two actions is learnt, so the scores are comparable within a state but not calibrated.
    """
    return -F.logsigmoid(chosen_logits.float() - rejected_logits.float()).mean()


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Direct Preference Optimisation (Rafailov et al. 2023), the policy-update step of AgentPRM
    when the PRM's preferences are distilled into the policy:

        loss = −log σ(β[(log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))]).

    Returns (mean loss, chosen rewards, rejected rewards); the implicit rewards
    β(log π − log π_ref) are detached, for logging (`dpo/rewards/margin` etc.).
    """
    chosen_ratio = policy_chosen_logps - ref_chosen_logps
    rejected_ratio = policy_rejected_logps - ref_rejected_logps
    loss = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio)).mean()
    return loss, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach()


def _shaped_reward(q: torch.Tensor, q_next: torch.Tensor, gamma: float, done: torch.Tensor) -> torch.Tensor:
    """r = Q(s,a) − γ·Q(s′,a′), with Q(s′,a′) = 0 after a terminal transition."""
    return q - gamma * q_next * (~done.bool()).to(q.dtype)


def inverse_prm_loss(
    q_expert: torch.Tensor,
    q_expert_next: torch.Tensor,
    q_learner: torch.Tensor,
    q_learner_next: torch.Tensor,
    gamma: float,
    expert_done: torch.Tensor,
    learner_done: torch.Tensor,
) -> torch.Tensor:
    """InversePRM: learn a PRM Q from demonstrations alone, as a discriminator between expert and
    learner transitions (the adversarial-IRL reading of the paper's Sec. 3).

    The implied per-step reward of a transition (s, a, s′, a′) is the inverse Bellman residual
    r = Q(s,a) − γ·Q(s′,a′), with Q(s′,a′) = 0 when the transition ends the episode (`done`), so the
    last expert action is credited in full. The discriminator D = σ(r) is trained to say "expert":

        loss = mean_E[−log σ(r_E)] + mean_L[−log(1 − σ(r_L))]
             = mean_E[softplus(−r_E)] + mean_L[softplus(r_L)].

    Each side is averaged on its own, so unequal expert/learner batch sizes weigh the sides equally.
    Gradients flow through both Q(s,a) and Q(s′,a′) (no target network).
    """
    r_expert = _shaped_reward(q_expert.float(), q_expert_next.float(), gamma, expert_done)
    r_learner = _shaped_reward(q_learner.float(), q_learner_next.float(), gamma, learner_done)
    return F.softplus(-r_expert).mean() + F.softplus(r_learner).mean()


def best_of_n_choice(scores: Sequence[float]) -> int:
    """Index of the highest PRM score among N sampled actions (Best-of-N at inference).

    Ties go to the first index, so with a constant PRM Best-of-N reduces to the first sample
    (i.e. the plain policy) rather than to an arbitrary one. A NaN score never wins.
    """
    if not scores:
        raise ValueError("best_of_n_choice needs at least one score")
    keyed = [-math.inf if math.isnan(s) else s for s in scores]
    return max(range(len(keyed)), key=keyed.__getitem__)  # max() keeps the first of equal keys
