"""Process reward shaping (paper §4): PRM targets that borrow a reference policy's value V_ref(s).

Why: with few rollouts per state, Q̂ of Eq. 1 is a handful of 0/γ^k samples, and in a game no
rollout won every Q̂ is 0, so the PRM learns nothing about which action was the better one there.
A reference policy (π0, or an earlier iterate) whose value V_ref(s) was learned from many rollouts
knows more: the potential-based shaped reward (Ng et al. 1999) r′ = r + γ·V_ref(s′) − V_ref(s)
credits an action with the value it moved the episode to, even in a lost game.

What is computed, following the paper's released code (`compute_shaped_prm_target.py`):

    y(visit at turn t) = γ^(T−1−t)·R + γ·V_ref(s_{t+1}) − V_ref(s_t)      V_ref(s_T) := 0
    y(s, a)            = mean of y over the visits of (s, a)
    q(s, a)            = σ(k·(y(s, a) − centre)),   k = c / IQR(y)           (over all rows)

- The first term is Eq. 1's own return (`train.losses.discounted_return`); the shaping term is the
  reference's one-step advantage of the logged action (without the reward, which the return holds).
  It is one step, not the discounted sum of every later step's term: that sum telescopes to
  −V_ref(s_t), a state-only baseline that would not tell two actions at the same state apart.
- V_ref(s_T) = 0 after the last turn, won or lost: nothing is left to gain. (The released code leaves
  the last turn unshaped; with V_ref(s_T) = 0 the last turn gets −V_ref(s_{T−1}) like any other.)
- y leaves [0, 1] (it is negative where an action lost value), while soft BCE (Eq. 4) needs
  probabilities, so y is squashed by a logistic centred on its mean with steepness c/IQR, c the
  `shaping_constant` (3.0 in the released config; a larger c separates the rows more sharply). The
  released code centres on the mean while its comment says median; `centre="median"` is offered
  because with 0/1 outcomes, mostly losses, the few won games pull the mean above nearly every lost
  game's y, and at k = c/IQR nearly every row then squashes to q ≈ 0 (measured: 774 of 801 rows
  below 0.1); the median splits the rows by whether the action raised V_ref. (Measured once at the
  CPU scale, README: the median keeps the signal, a DPO pair gap of 0.026 instead of 2e-4, but that
  PRM ranked lost games' states above won ones, AUC 0.26; the mean stays the default.) The
  squashed q orders rows as y does but is no longer a probability of success: a shaped PRM ranks
  actions (Best-of-N, online DPO) and its calibration is not meaningful. Rows keep the unshaped Q̂
  as `q_mc`, the label validation AUC is measured against.

V_ref is a value model: a PRM that reads the state alone (`PRM.reads = "state"`), trained with
`agentprm train-prm --reads state` on value targets (`agentprm targets --values`: V̂(s) = mean over
the visits of s of γ^(T−1−t)·R, any action) of the reference policy's rollouts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from agentprm.bounds import ShapingCentre
from agentprm.contexts import contexts_from_episode
from agentprm.prompts import TurnContext
from agentprm.train.losses import discounted_return
from agentprm.trajectory import Episode


def shaping_terms(values: Sequence[float], gamma: float) -> list[float]:
    """γ·V(s_{t+1}) − V(s_t) for t = 0..T−1 of a T-turn episode, `values[t]` = V(s_t), V(s_T) = 0."""
    v = [*values, 0.0]
    return [gamma * v[t + 1] - v[t] for t in range(len(values))]


def shaped_returns(values: Sequence[float], R: float, gamma: float) -> list[float]:
    """y_t = γ^(T−1−t)·R + γ·V(s_{t+1}) − V(s_t) for every turn of a T-turn episode with outcome R."""
    T = len(values)
    return [discounted_return(T, t, R, gamma) + term for t, term in enumerate(shaping_terms(values, gamma))]


def squash(ys: Sequence[float], constant: float, centre: ShapingCentre = "mean") -> tuple[list[float], float, float]:
    """σ(k·(y − c_y)) of every y, k = constant / IQR(y) (k = 1 when the IQR is 0, as released), c_y
    the mean (as released) or the median of y; returns the squashed values, c_y and k."""
    y = np.asarray(ys, dtype=float)
    if y.size == 0:
        return [], 0.0, 1.0
    q75, q25 = np.percentile(y, [75, 25])
    k = constant / (q75 - q25) if q75 > q25 else 1.0
    at = float(np.median(y) if centre == "median" else y.mean())
    return (1.0 / (1.0 + np.exp(-k * (y - at)))).tolist(), at, float(k)


class StateScorer(Protocol):
    """What shaping needs of a value model: V(s) of many states (`PRM` with reads="state" is one)."""

    def score(self, contexts: Sequence[TurnContext], actions: Sequence[str], batch_size: int = 16,
              reasons: Sequence[str | None] | None = None) -> list[float]: ...


def state_values(episodes: Iterable[Episode], scorer: StateScorer, key_of: Callable[[TurnContext], str],
                 batch_size: int = 16) -> dict[str, float]:
    """V_ref(s_t) of every turn of the episodes, by `key_of` (`targets.state_key`, passed in because
    targets imports this module); each distinct state is scored once."""
    todo: dict[str, TurnContext] = {}
    for ep in episodes:
        for ctx in contexts_from_episode(ep):
            todo.setdefault(key_of(ctx), ctx)
    keys = list(todo)
    scores = scorer.score([todo[k] for k in keys], [""] * len(keys), batch_size=batch_size) if keys else []
    return dict(zip(keys, (float(s) for s in scores), strict=True))


@dataclass
class Shaping:
    """V_ref by state key, and the summary of what shaping did."""

    values: Mapping[str, float]
    constant: float
    source: str
    """The value model's path, as given."""
    centre: ShapingCentre = "mean"
    """Where the squashing is centred (`squash`)."""

    def returns(self, state_keys: Sequence[str], R: float, gamma: float) -> list[float]:
        """y_t of one episode whose turn t is at state state_keys[t] and whose outcome is R."""
        return shaped_returns([self.values[k] for k in state_keys], R, gamma)

    def squash_rows(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Replace every row's q (the mean y) by its squashed value, in place; the summary entries."""
        ys = [r["q"] for r in rows]
        qs, at, k = squash(ys, self.constant, self.centre)
        for r, q in zip(rows, qs, strict=True):
            r["q"] = q
        return {
            "targets/shaping/value_model": self.source,
            "targets/shaping/constant": self.constant,
            "targets/shaping/mean_v_ref": float(np.mean(list(self.values.values()))) if self.values else None,
            "targets/shaping/centre": self.centre,
            "targets/shaping/y_centre": at,
            "targets/shaping/y_mean": float(np.mean(ys)) if ys else None,
            "targets/shaping/y_min": float(min(ys)) if ys else None,
            "targets/shaping/y_max": float(max(ys)) if ys else None,
            "targets/shaping/k": k,
        }


def load_value_model(path: str, device: str | None = None) -> StateScorer:
    """The value model of `path` (a PRM folder or train-prm output that reads the state); ConfigError
    if it reads actions (a PRM, not a value model), ModelLoadError if missing or corrupt."""
    from agentprm.train.prm import PRM

    return PRM.load(path, device=device, value_model=True)
