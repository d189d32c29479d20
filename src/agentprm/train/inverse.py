"""InversePRM (paper §3, Eq. 9): a PRM learnt from demonstrations alone, with no outcome reward.

Q is the same `PRM` as AgentPRM's (backbone + scalar head; Q(s,a) is its raw score z), trained as a
discriminator between expert and learner *transitions* (s, a, s′, a′): the implied reward of a
transition is the inverse Bellman residual r = Q(s,a) − γ·Q(s′,a′), pushed up on expert transitions
and down on learner ones (`losses.inverse_prm_loss`). The policy step is then AgentPRM's (online DPO
against Q with π_{i−1} as the reference, `train.dpo`), and the loop alternates the two.

Transitions, turn by turn within one episode (never across episodes):
- expert: a = the demonstrator's action at s; a′ = the demonstrator's action at s′ (its label
  `expert_action` where one was recorded, else the action taken). A DART-noise turn (taken action ≠
  the expert's label) is not an expert transition and is left out; its expert label still serves as a′
  of the turn before it.
- learner: a = π_{i−1}'s action at s; a′ = the action π_{i−1} sampled at that same s′ in the rollout,
  which *is* a draw from π_{i−1}(·|s′). (The paper's released code samples a′ for a flat list of next
  states with the terminal ones removed, so every terminal transition shifts all later a′ by one onto
  another episode's state; here a′ is tied to its own s′ by construction.) Transitions of several
  iterations' rollouts are pooled, each keeping the a′ of the policy that played it.
- the last turn of every episode is terminal: Q(s′,a′) = 0. This is deliberately the same for a won,
  lost or cut-off episode: in ALFWorld an episode ends early only when it is won, so telling "done"
  from "cut off" (`done`, `truncated`) would hand the outcome to the discriminator.

Nothing here reads `won`, `truncated`, `done` or `reward`: flipping them changes no weight (tested).
Episodes whose worker failed (`failed`) are skipped: they were not played to an end.

Outputs under `out/`: model/ (a `PRM`, loadable by `PRM.load`, Best-of-N and `train-policy`),
checkpoint/ (after every epoch; a rerun resumes there), config.json, summary.json.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from agentprm.atomic import write_json
from agentprm.bounds import Count, Discount, Fraction, NonNegative, NonNegInt, Positive
from agentprm.contexts import contexts_from_episode
from agentprm.errors import ConfigError
from agentprm.models import training_attention
from agentprm.prompts import TurnContext
from agentprm.targets import split_of, usable
from agentprm.train.losses import inverse_prm_loss
from agentprm.train.prm import (
    PRM,
    _autocast,
    _save_checkpoint,
    _versions,
    optimizer_and_scheduler,
    seeded_subset,
)
from agentprm.trajectory import Episode, load_episodes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transition:
    """(s, a, s′, a′) of one turn; `next_context`/`next_action` are None when the turn ends its episode."""

    context: TurnContext
    action: str
    next_context: TurnContext | None
    next_action: str | None
    game_id: str
    episode_id: str
    t: int

    @property
    def terminal(self) -> bool:
        return self.next_context is None


def expert_transitions(episodes: Iterable[Episode]) -> list[Transition]:
    """Expert transitions of demonstrations, in episode and turn order (see the module docstring)."""
    out = []
    for ep in usable(episodes):
        ctxs, steps = contexts_from_episode(ep), ep.steps
        labels = [s.expert_action or s.action for s in steps]  # the expert's action at each state
        for t, step in enumerate(steps):
            if labels[t] != step.action:  # DART noise: the expert did not take this action
                continue
            last = t == len(steps) - 1
            out.append(Transition(ctxs[t], step.action, None if last else ctxs[t + 1],
                                  None if last else labels[t + 1], ep.game_id, ep.episode_id, t))
    return out


def learner_transitions(episodes: Iterable[Episode]) -> list[Transition]:
    """Learner transitions of rollouts (of one or several iterations, pooled), a′ the action the
    learner took at s′ in the same episode."""
    out = []
    for ep in usable(episodes):
        ctxs, steps = contexts_from_episode(ep), ep.steps
        for t, step in enumerate(steps):
            last = t == len(steps) - 1
            out.append(Transition(ctxs[t], step.action, None if last else ctxs[t + 1],
                                  None if last else steps[t + 1].action, ep.game_id, ep.episode_id, t))
    return out


@dataclass
class InversePRMConfig:
    """Everything `train_inverse_prm` needs; the resolved config is written to out/config.json."""

    demos: list[str]
    """Expert trajectory files/folders (demonstrations): the expert transitions."""
    rollouts: list[str]
    """Learner trajectory files/folders, pooled (the loop passes every iteration's rollouts so far)."""
    out: str
    """Run folder: model/, checkpoint/, summary.json, config.json."""
    model: str = "smollm2"
    """Backbone spec for a fresh PRM ("smollm2", "tiny", a folder, a hub id); ignored with `init`."""
    init: str | None = None
    """Start from this saved PRM (e.g. the previous iteration's) instead of a fresh head on `model`."""
    gamma: Discount = 0.95
    """Discount of the shaped reward r = Q(s,a) − γ·Q(s′,a′)."""
    epochs: Count = 1
    """Passes over the larger side (expert or learner); the smaller side is cycled alongside."""
    lr: Positive = 1e-5
    """Peak learning rate (AdamW), shared by backbone and head."""
    weight_decay: NonNegative = 0.0
    scheduler: str = "cosine"
    """Any `transformers.get_scheduler` name."""
    warmup_ratio: Fraction = 0.05
    batch_size: Count = 8
    """Expert transitions *and* learner transitions per optimizer step (up to 4× as many sequences:
    (s,a) and (s′,a′) of each)."""
    eval_batch_size: Count = 32
    max_length: Count = 1024
    """Tokens kept per sequence (cut from the left; the answer is never cut)."""
    history_window: NonNegInt | None = None
    """Previous turns shown in the prompt (None: all); saved with the PRM and reused at scoring."""
    val_fraction: Fraction = 0.1
    """Share of games (both sides, split by a salted hash of game_id) held out for validation."""
    max_grad_norm: Positive = 1.0
    max_transitions: Count | None = None
    """Train on at most this many transitions per side (a seeded sample); for smoke runs and CPU scale."""
    max_val_transitions: Count | None = None
    """Validate on at most this many transitions per side (a seeded sample; None: all). Validation scores
    (s, a) and (s′, a′) of every held-out transition, so on a CPU a whole held-out split can take longer
    than training (measured: 5,322 learner transitions, ~14 min)."""
    seed: int = 0
    device: str = "auto"
    dtype: str = "fp32"
    """Master-weight dtype; on CUDA the forward passes run under bf16 autocast anyway."""
    progress: bool = True

    def validate(self) -> None:
        if not self.demos or not self.rollouts:
            raise ConfigError("inverse-prm: give demonstrations (demos) and learner rollouts (rollouts)")
        if self.max_length < 8:
            raise ConfigError(f"inverse-prm: max_length={self.max_length} must be >= 8")


Side = Literal["expert", "learner"]


def _load(cfg: InversePRMConfig) -> dict[tuple[str, Side], list[Transition]]:
    """Transitions per (split, side); train keeps at most `max_transitions` per side and validation at
    most `max_val_transitions` (seeded samples)."""
    sides: dict[Side, list[Transition]] = {
        "expert": expert_transitions(load_episodes(cfg.demos, skip_corrupt=True)),
        "learner": learner_transitions(load_episodes(cfg.rollouts, skip_corrupt=True)),
    }
    data: dict[tuple[str, Side], list[Transition]] = {}
    for side, items in sides.items():
        for split in ("train", "val"):
            data[split, side] = [x for x in items if split_of(x.game_id, cfg.val_fraction, cfg.seed) == split]
        if not data["train", side]:
            what = "demos" if side == "expert" else "rollouts"
            raise ConfigError(f"inverse-prm: no {side} transitions for training in {getattr(cfg, what)} (games "
                              f"held out for validation: val_fraction={cfg.val_fraction}); give more or lower it")
        data["train", side] = seeded_subset(data["train", side], cfg.max_transitions, cfg.seed)
        data["val", side] = seeded_subset(data["val", side], cfg.max_val_transitions, cfg.seed)
    return data


def _q_values(prm: PRM, batch: Sequence[Transition]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(Q(s,a), Q(s′,a′) with 0 at terminal turns, terminal mask, real tokens) of a batch: every
    (s,a) and every non-terminal (s′,a′) in one forward pass."""
    nxt = [i for i, x in enumerate(batch) if not x.terminal]
    ctxs = [x.context for x in batch] + [batch[i].next_context for i in nxt]
    acts = [x.action for x in batch] + [batch[i].next_action for i in nxt]
    input_ids, mask = prm.collate(prm.token_ids(prm.texts(ctxs, acts)))  # type: ignore[arg-type]
    z = prm(input_ids, mask)  # (B + #non-terminal,)
    q_next = torch.zeros(len(batch), device=z.device)
    q_next[torch.tensor(nxt, dtype=torch.long, device=z.device)] = z[len(batch) :]  # keeps the gradient
    done = torch.tensor([x.terminal for x in batch], device=z.device)
    return z[: len(batch)], q_next, done, int(mask.sum())


def _step_loss(prm: PRM, expert: Sequence[Transition], learner: Sequence[Transition],
               gamma: float) -> tuple[torch.Tensor, dict[str, float], int]:
    """Eq. 9 on one batch of each side; (loss, metrics, tokens)."""
    qe, qe_next, de, ne = _q_values(prm, expert)
    ql, ql_next, dl, nl = _q_values(prm, learner)
    loss = inverse_prm_loss(qe, qe_next, ql, ql_next, gamma, de, dl)
    with torch.no_grad():
        re = qe - gamma * qe_next  # q_next is already 0 at terminal turns
        rl = ql - gamma * ql_next
        right = (re > 0).sum() + (rl < 0).sum()
    metrics = {"expert_reward": re.mean().item(), "learner_reward": rl.mean().item(),
               "accuracy": right.item() / (len(expert) + len(learner))}
    return loss, metrics, ne + nl


def _side_batches(n: int, steps: int, batch: int, gen: torch.Generator) -> list[list[int]]:
    """`steps` batches of indices into n items: seeded permutations one after another, so every item
    is used equally often (±1) however the two sides' sizes compare."""
    order: list[int] = []
    while len(order) < steps * batch:
        order += torch.randperm(n, generator=gen).tolist()
    return [order[k * batch : (k + 1) * batch] for k in range(steps)]


@torch.no_grad()
def evaluate(prm: PRM, expert: list[Transition], learner: list[Transition], gamma: float,
             batch_size: int, progress: bool = False) -> dict[str, float | None]:
    """Validation loss and discriminator accuracy (expert r > 0, learner r < 0) on held-out games; with
    `progress`, a bar over the transitions (a whole held-out split can take longer than training)."""
    from agentprm.progress import progress_bar

    keys = ("inverse/val_loss", "inverse/val_accuracy", "inverse/val_expert_reward", "inverse/val_learner_reward")
    if not expert or not learner:
        return dict.fromkeys(keys)
    was_training = prm.training
    prm.eval()
    try:
        r: dict[str, list] = {"expert": [], "learner": []}
        with progress_bar(disable=not progress) as bar:
            task = bar.add_task("InversePRM validation", total=len(expert) + len(learner))
            for side, items in (("expert", expert), ("learner", learner)):
                for s in range(0, len(items), batch_size):
                    batch = items[s : s + batch_size]
                    with _autocast(prm.device):
                        q, q_next, _, _ = _q_values(prm, batch)
                    r[side] += (q - gamma * q_next).float().tolist()
                    bar.advance(task, len(batch))
    finally:
        prm.train(was_training)
    re, rl = torch.tensor(r["expert"]), torch.tensor(r["learner"])
    # the shaped rewards are already computed: feed them as Q with every transition "terminal" (r = Q)
    loss = inverse_prm_loss(re, torch.zeros_like(re), rl, torch.zeros_like(rl), gamma,
                            torch.ones_like(re, dtype=torch.bool), torch.ones_like(rl, dtype=torch.bool))
    acc = ((re > 0).sum() + (rl < 0).sum()).item() / (len(re) + len(rl))
    return dict(zip(keys, (loss.item(), acc, re.mean().item(), rl.mean().item()), strict=True))


def _start(cfg: InversePRMConfig) -> tuple[PRM, dict | None]:
    """The checkpoint's model and state when out/checkpoint exists, else `init` or a fresh PRM."""
    ckpt = Path(cfg.out) / "checkpoint"
    if (ckpt / "state.json").is_file():
        state = json.loads((ckpt / "state.json").read_text())
        for k in ("demos", "rollouts", "gamma", "history_window", "val_fraction", "seed"):
            if state["config"][k] != getattr(cfg, k):
                raise ConfigError(f"inverse-prm: {ckpt} was written with {k}={state['config'][k]!r}, not "
                                  f"{getattr(cfg, k)!r}; delete it or choose another --out")
        log.info("inverse-prm: resuming from %s after epoch %d", ckpt, state["epoch"])
        return PRM.load(ckpt / "model", cfg.device, cfg.dtype), state
    if cfg.init is not None:
        prm = PRM.load(cfg.init, cfg.device, cfg.dtype)
        prm.history_window, prm.max_length = cfg.history_window, cfg.max_length
        prm.reads = "action"  # transitions carry actions only: read at scoring time what it trains on
        return prm, None
    return PRM.from_spec(cfg.model, cfg.device, cfg.dtype, cfg.history_window, cfg.max_length), None


def _run_epoch(prm: PRM, cfg: InversePRMConfig, expert: list[Transition], learner: list[Transition],
               opt: Any, sched: Any, epoch: int, steps: int) -> dict[str, Any]:
    """One pass in a seeded order (the same order after a resume); returns epoch metrics."""
    from agentprm.progress import progress_bar

    prm.train()
    gen = torch.Generator().manual_seed(cfg.seed + epoch)
    batches = zip(_side_batches(len(expert), steps, cfg.batch_size, gen),
                  _side_batches(len(learner), steps, cfg.batch_size, gen), strict=True)
    rows, tokens, t0 = [], 0, time.perf_counter()
    name = f"InversePRM epoch {epoch + 1}/{cfg.epochs}"
    with progress_bar(disable=not cfg.progress) as bar:
        task = bar.add_task(name, total=steps)
        for be, bl in batches:
            with _autocast(prm.device):
                loss, metrics, n_tok = _step_loss(prm, [expert[i] for i in be], [learner[i] for i in bl], cfg.gamma)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prm.parameters(), cfg.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            rows.append({"loss": loss.item(), **metrics})
            tokens += n_tok
            bar.update(task, advance=1, description=f"{name} loss {rows[-1]['loss']:.4f}")
    dt = time.perf_counter() - t0
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return {"epoch": epoch + 1, "inverse/train_loss": mean["loss"], "inverse/train_accuracy": mean["accuracy"],
            "inverse/train_expert_reward": mean["expert_reward"],
            "inverse/train_learner_reward": mean["learner_reward"], "inverse/lr": sched.get_last_lr()[0],
            "inverse/train_tokens_per_s": tokens / dt, "inverse/train_steps_per_s": steps / dt}


def _data_stats(data: dict[tuple[str, Side], list[Transition]]) -> dict[str, int]:
    out = {}
    for (split, side), items in data.items():
        out[f"inverse/data/{split}_{side}_transitions"] = len(items)
        out[f"inverse/data/{split}_{side}_terminal"] = sum(x.terminal for x in items)
    return out


def train_inverse_prm(cfg: InversePRMConfig) -> dict[str, Any]:
    """Train (or resume) an InversePRM and write model/, checkpoint/ and summary.json under cfg.out."""
    cfg.validate()
    torch.manual_seed(cfg.seed)  # dropout, if the backbone has any
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", {"config": asdict(cfg), "versions": _versions()})
    prm, state = _start(cfg)
    training_attention(prm.backbone)  # eager on CUDA: see models.training_attention
    data = _load(cfg)
    expert, learner = data["train", "expert"], data["train", "learner"]
    steps = -(-max(len(expert), len(learner)) // cfg.batch_size)
    opt, sched = optimizer_and_scheduler(prm, cfg, steps * cfg.epochs, state)
    history: list[dict] = state["history"] if state else []
    start = state["epoch"] if state else 0
    log.info("inverse-prm: %d expert and %d learner transitions, %d steps/epoch", len(expert), len(learner), steps)
    for epoch in range(start, cfg.epochs):
        metrics = _run_epoch(prm, cfg, expert, learner, opt, sched, epoch, steps)
        metrics |= evaluate(prm, data["val", "expert"], data["val", "learner"], cfg.gamma, cfg.eval_batch_size,
                            cfg.progress)
        history.append(metrics)
        log.info("inverse-prm: %s", json.dumps(metrics))
        _save_checkpoint(out, prm, opt, sched, {"epoch": epoch + 1, "history": history, "config": asdict(cfg)})
    prm.save(out / "model")
    last = history[-1] if history else {}
    summary = {**{k: v for k, v in last.items() if k != "epoch"}, **_data_stats(data),
               "inverse/resumed_from_epoch": start, "history": history, "config": asdict(cfg),
               "versions": _versions(),
               "note": "r = Q(s,a) - gamma*Q(s',a') (Q(s',a') = 0 on an episode's last turn); Eq. 9 "
                       "pushes r up on expert and down on learner transitions; no outcome label is read."}
    write_json(out / "summary.json", summary)
    return summary
