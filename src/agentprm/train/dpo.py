"""Policy step of AgentPRM (paper Eq. 5): improve π against the PRM with a KL leash to π_{i-1}.

Online DPO, one optimizer step at a time:
  1. draw a batch of states from the rollouts (the states π_{i-1} visits);
  2. sample two answers per state from the *current* weights (so the data stays on-policy);
  3. the PRM scores both answers (the whole answer, reason + action, or the action alone: what it
     was trained to read, `PRM.reads`); the higher is "chosen" (pairs with equal actions or a score
     gap under `min_margin` carry no preference and are dropped: the PRM's targets are per action, so
     two reasons for one command carry no preference it was trained on);
  4. DPO loss with β against a frozen copy of π_{i-1} (the reference) — the KL leash.
`method="rejection"` is the simple alternative the paper names: sample N, fine-tune (NLL) on the
PRM's favourite.

Reward hacking (the paper's Fig. 3): the PRM reward can keep rising while real success falls. Every
`monitor_every` steps we play held-back *train* games greedily and log real success next to the mean
PRM reward and the KL estimate; the best checkpoint by real success is kept and becomes the output.

Data parallel under `accelerate launch`/`torchrun` (`train.parallel`): `batch_states` stays the global
batch; each process samples, scores and trains on its share of the states, metrics are over the whole
batch, and the main process alone plays the monitor games and writes files.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from annotated_types import Ge
from transformers import get_scheduler

from agentprm.agents.policy import (
    LMPolicy,
    PolicyConfig,
    answer_logprobs,
    answers_logprobs,
    encode_answer,
    encode_prompt,
)
from agentprm.atomic import replace_dir, save_figure, save_model, temp_dir_for, write_json
from agentprm.bounds import Count, NonNegative, NonNegInt, Positive
from agentprm.contexts import contexts_from_episode
from agentprm.errors import ConfigError
from agentprm.models import resolve_model, training_attention
from agentprm.progress import progress_bar
from agentprm.prompts import TurnContext
from agentprm.train.losses import dpo_loss
from agentprm.train.parallel import (
    broadcast,
    device_for,
    gather_list,
    global_sums,
    loss_weight,
    make_accelerator,
    my_share,
)
from agentprm.trajectory import load_episodes


@dataclass
class PolicyTrainConfig:
    policy: str
    """π_{i-1}: model spec or folder; also the frozen DPO reference."""
    prm: str
    """Folder of a trained PRM (train-prm's output)."""
    states: list[str]
    """Trajectory files/folders whose turns are the training states."""
    out: str
    """Output folder: model/ (the kept policy), checkpoint/, metrics.jsonl, summary.json, plots."""
    method: Literal["dpo", "rejection"] = "dpo"
    """"dpo" (online DPO, 2 samples per state) or "rejection" (sample N, fine-tune on the PRM's best)."""
    beta: Positive = 0.1
    """DPO temperature: larger keeps π closer to the reference."""
    lr: Positive = 1e-5
    """AdamW learning rate (linear decay after warm-up)."""
    steps: Count = 50
    """Optimizer steps."""
    batch_states: Count = 8
    """States per optimizer step."""
    samples: Annotated[int, Ge(2)] | None = None
    """Answers sampled per state (None: 2 for dpo, 4 for rejection). DPO pairs the PRM's best and worst
    distinct actions among them: more samples, more states with a pair when the policy is peaked."""
    mode: Literal["generate", "constrained", "score"] = "generate"
    """How the policy samples its answers: generate, constrained or score (see agents.policy)."""
    temperature: NonNegative = 1.0
    """Sampling temperature for the pairs."""
    max_new_tokens: Count = 48
    history_window: NonNegInt | None = 8
    """Must match what the policy was trained with."""
    min_margin: NonNegative = 0.0
    """Drop DPO pairs whose PRM scores differ by no more than this."""
    warmup_steps: NonNegInt = 0
    monitor_every: NonNegInt = 0
    """Evaluate real success every k steps (0: off; then the final weights are kept)."""
    monitor_games: Count = 8
    """Held-back train games for the monitor (the last games of a seeded shuffle of `monitor_split`)."""
    monitor_split: str = "train"
    early_stop_patience: Count | None = None
    """Stop after this many monitor evaluations without a new best (None: never)."""
    max_steps_per_episode: Count = 30
    workers: Count | None = None
    backend: Literal["process", "ray"] = "process"
    """What runs the monitor's env workers (see envs.pool.open_pool)."""
    ray_address: str | None = None
    seed: int = 0
    device: str | None = None
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.method not in ("dpo", "rejection"):
            raise ConfigError(f"method must be 'dpo' or 'rejection', got {self.method!r}")
        if self.beta <= 0 or self.steps < 1 or self.batch_states < 1:
            raise ConfigError("need beta > 0, steps >= 1 and batch_states >= 1")


@dataclass
class _State:
    step: int = 0
    best_success: float = -1.0
    best_step: int = -1
    evals_since_best: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def load_states(paths: list[str], seed: int) -> list[TurnContext]:
    """Every turn of every non-failed episode, shuffled (seeded)."""
    ctxs = [c for ep in load_episodes(paths, skip_corrupt=True) if ep.failed is None for c in contexts_from_episode(ep)]
    if not ctxs:
        raise ConfigError(f"no states in {paths}: run rollouts first")
    random.Random(seed).shuffle(ctxs)
    return ctxs


def preference_pairs(
    samples: list[list[Any]], scores: list[list[float]], min_margin: float
) -> list[tuple[int, Any, Any, float, float]]:
    """(state index, chosen, rejected, chosen score, rejected score) per state: the PRM's best and
    worst samples (the first sampled wins ties), when they are different actions scored further apart
    than `min_margin`."""
    pairs = []
    for i, (outs, sc) in enumerate(zip(samples, scores, strict=True)):
        hi = max(range(len(sc)), key=lambda j: (sc[j], -j))
        lo = min(range(len(sc)), key=lambda j: (sc[j], j))
        if outs[hi].action == outs[lo].action or sc[hi] - sc[lo] <= min_margin:
            continue
        pairs.append((i, outs[hi], outs[lo], sc[hi], sc[lo]))
    return pairs


class PolicyTrainer:
    """Holds π (trained), π_ref (frozen), the PRM, the optimizer, and the monitor."""

    def __init__(self, cfg: PolicyTrainConfig):
        from agentprm.train.prm import PRM

        self.cfg = cfg
        self.acc = make_accelerator(cfg.device)
        if cfg.batch_states < self.acc.num_processes:
            raise ConfigError(f"batch_states={cfg.batch_states} is the global batch: it needs at least one state "
                              f"for each of the {self.acc.num_processes} processes")
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        ckpt = self.out / "checkpoint"
        start = str(ckpt / "model") if (ckpt / "state.json").is_file() else cfg.policy
        device = device_for(self.acc, cfg.device)
        self.model, self.tokenizer = resolve_model(start, device, cfg.dtype)
        training_attention(self.model)  # eager on CUDA: see models.training_attention
        self.ref = resolve_model(cfg.policy, device, cfg.dtype)[0] if cfg.method == "dpo" else None
        if self.ref is not None:
            self.ref.requires_grad_(False)
        self.prm = PRM.load(cfg.prm, device=device, value_model=False)
        self.states = load_states(cfg.states, cfg.seed)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr)
        self.sched = get_scheduler("linear", self.opt, cfg.warmup_steps, cfg.steps)
        self.state = _State()
        if start != cfg.policy:
            self._resume(ckpt)
        # the loss goes through `self.ddp` (DDP wrapper, or the model itself for one process); sampling
        # and no-grad scoring use `self.model`, the same weights
        self.ddp, self.opt = self.acc.prepare(self.model, self.opt)
        pc = PolicyConfig(mode=cfg.mode, temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                          history_window=cfg.history_window, seed=cfg.seed, prefix_cache=False)
        self.sampler = LMPolicy(self.model, self.tokenizer, pc, name="pi")

    # -- one step ---------------------------------------------------------------------------------
    def batch(self) -> list[TurnContext]:
        k, n = self.cfg.batch_states, len(self.states)
        s = (self.state.step * k) % n
        return [self.states[(s + j) % n] for j in range(k)]

    def step(self) -> dict[str, float]:
        """One optimizer step on the global batch of states; this process handles its share of them."""
        batch = self.batch()
        mine = my_share(self.acc, range(len(batch)))  # positions in the global batch, at least one
        ctxs = [batch[i] for i in mine]
        n = self.cfg.samples or (2 if self.cfg.method == "dpo" else 4)
        self.model.eval()
        samples = self.sampler.sample(ctxs, n, first_index=mine[0])
        flat_ctx = [c for c, outs in zip(ctxs, samples, strict=True) for _ in outs]
        flat_out = [o for outs in samples for o in outs]
        flat = self.prm.score(flat_ctx, [o.action for o in flat_out], reasons=[o.reason for o in flat_out])
        scores = [flat[i * n : (i + 1) * n] for i in range(len(ctxs))]
        msgs = [self.sampler.messages(c) for c in ctxs]
        ref = self._logprobs(self.ref, msgs, samples) if self.ref is not None else None  # (B, n), once
        self.model.train()
        if self.cfg.method == "dpo":
            metrics = self._dpo(msgs, samples, scores, ref)
        else:
            metrics = self._rejection(msgs, samples, scores)
        rewards = gather_list(self.acc, flat)
        metrics["prm/mean_reward"] = sum(rewards) / len(rewards)
        # sample-based KL(π‖π_ref) ≈ mean of log π − log π_ref over the samples (no reference: 0)
        if ref is not None:
            kl = gather_list(self.acc, (self._logprobs(self.model, msgs, samples) - ref).flatten().tolist())
            metrics["policy/kl"] = torch.tensor(kl).mean().item()
        else:
            metrics["policy/kl"] = 0.0
        self.state.step += 1
        return metrics

    def _answers_logprobs(self, model: Any, msgs: list[list[dict[str, str]]], answers: list[list[str]]) -> torch.Tensor:
        """log p(answer + end-of-turn | prompt) for answers[i][j] after state i's prompt, shape (states,
        answers per state); each prompt read once (`answers_logprobs`). Gradients flow unless called
        under no_grad."""
        prompts = [encode_prompt(self.tokenizer, m) for m in msgs]
        ids = [[encode_answer(self.tokenizer, a) for a in group] for group in answers]
        flat = answers_logprobs(model, prompts, ids, self.tokenizer.pad_token_id)
        return flat.view(len(msgs), -1)

    @torch.no_grad()
    def _logprobs(self, model: Any, msgs: list[list[dict[str, str]]], samples: list[list[Any]]) -> torch.Tensor:
        """log p(answer | prompt) of every sampled answer under `model`, shape (states, samples)."""
        return self._answers_logprobs(model, msgs, [[o.raw_output for o in outs] for outs in samples])

    def _update(self, loss: torch.Tensor, weight: float) -> float:
        """Backward of this process's loss × `weight` (`train.parallel`) and an optimizer step; returns
        the global batch's loss."""
        self.opt.zero_grad(set_to_none=True)
        self.acc.backward(loss * weight)
        self.acc.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.sched.step()
        return global_sums(self.acc, loss.item() * weight)[0] / self.acc.num_processes

    def _dpo(
        self, msgs: list[list[dict[str, str]]], samples: list[list[Any]], scores: list[list[float]],
        ref: torch.Tensor,
    ) -> dict[str, float]:
        pairs = preference_pairs(samples, scores, self.cfg.min_margin)
        n_pairs = int(global_sums(self.acc, len(pairs))[0])
        if not n_pairs:
            self.sched.step()
            return {"dpo/pairs": 0.0}
        # a process without a pair of its own still joins the backward pass (DDP), at weight 0
        used = pairs or [(0, samples[0][0], samples[0][-1], 0.0, 0.0)]
        states = [i for i, *_ in used]
        pair_msgs = [msgs[i] for i in states]
        chosen = [c.raw_output for _, c, *_ in used]
        rejected = [r.raw_output for _, _, r, *_ in used]
        pol = self._answers_logprobs(self.ddp, pair_msgs, [[c, r] for c, r in zip(chosen, rejected, strict=True)])
        pol_c, pol_r = pol[:, 0], pol[:, 1]
        # the reference log-probs were computed for every sample: pick the chosen and rejected ones
        def column(i: int, out: Any) -> int:
            return next(j for j, o in enumerate(samples[i]) if o is out)

        ref_c = ref[states, [column(i, c) for i, c, *_ in used]]
        ref_r = ref[states, [column(i, r) for i, _, r, *_ in used]]
        loss, rc, rr = dpo_loss(pol_c, pol_r, ref_c, ref_r, self.cfg.beta)
        loss_all = self._update(loss, loss_weight(len(pairs), n_pairs, self.acc.num_processes))
        rc, rr = (torch.tensor(gather_list(self.acc, x.tolist() if pairs else [])) for x in (rc, rr))
        gaps = gather_list(self.acc, [sc - sr for *_, sc, sr in pairs])
        return {
            "dpo/loss": loss_all,
            "dpo/pairs": float(n_pairs),
            "dpo/rewards/chosen": rc.mean().item(),
            "dpo/rewards/rejected": rr.mean().item(),
            "dpo/rewards/margin": (rc - rr).mean().item(),
            "dpo/rewards/accuracy": (rc > rr).float().mean().item(),
            "prm/pair_gap": sum(gaps) / len(gaps),
        }

    def _rejection(
        self, msgs: list[list[dict[str, str]]], samples: list[list[Any]], scores: list[list[float]]
    ) -> dict[str, float]:
        best = [outs[max(range(len(sc)), key=sc.__getitem__)] for outs, sc in zip(samples, scores, strict=True)]
        lp = answer_logprobs(self.ddp, self.tokenizer, msgs, [b.raw_output for b in best])
        loss = -lp.mean()
        nll = self._update(loss, loss_weight(len(msgs), self.cfg.batch_states, self.acc.num_processes))
        best_rewards = gather_list(self.acc, [max(s) for s in scores])
        return {"rejection/nll": nll, "prm/best_reward": sum(best_rewards) / len(best_rewards)}

    # -- monitor, checkpoints -----------------------------------------------------------------------
    def monitor(self) -> float:
        """Greedy real success on held-back train games (the reward-hacking check); played by the main
        process alone, every process gets the result."""
        return broadcast(self.acc, self._play_held_back() if self.acc.is_main_process else None)

    def _play_held_back(self) -> float:
        from agentprm.envs.games import find_games
        from agentprm.rollout import make_jobs, run_rollouts

        games = find_games(self.cfg.monitor_split)
        random.Random(self.cfg.seed).shuffle(games)
        held = sorted(games[-self.cfg.monitor_games :], key=lambda g: g.game_id)
        greedy = LMPolicy(self.model.eval(), self.tokenizer, PolicyConfig(
            mode=self.cfg.mode, temperature=0.0, history_window=self.cfg.history_window), name="pi")
        eps = run_rollouts(greedy, make_jobs(held), self.out / "monitor" / f"step{self.state.step}.jsonl",
                           self.cfg.workers, self.cfg.max_steps_per_episode, show_progress=False,
                           backend=self.cfg.backend, ray_address=self.cfg.ray_address)
        finished = [e for e in eps if e.failed is None]  # a failed episode has no outcome, not a loss
        return sum(e.won for e in finished) / max(1, len(finished))

    def save(self, folder: Path) -> None:
        """Weights, optimizer and loop state together, so a resume never mixes two steps."""
        tmp = temp_dir_for(folder)
        self.model.save_pretrained(tmp / "model")
        self.tokenizer.save_pretrained(tmp / "model")
        torch.save({"opt": self.opt.state_dict(), "sched": self.sched.state_dict()}, tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(asdict(self.state)))
        replace_dir(tmp, folder)

    def _resume(self, ckpt: Path) -> None:
        self.state = _State(**json.loads((ckpt / "state.json").read_text()))
        # our own file, tensors only; onto this process's device (not the device it was saved from)
        saved = torch.load(ckpt / "optimizer.pt", map_location=self.model.device, weights_only=True)
        self.opt.load_state_dict(saved["opt"])
        self.sched.load_state_dict(saved["sched"])

    def keep_best(self, success: float) -> bool:
        if success > self.state.best_success:
            self.state.best_success, self.state.best_step, self.state.evals_since_best = success, self.state.step, 0
            if self.acc.is_main_process:
                save_model(self.model, self.tokenizer, self.out / "best")
            return True
        self.state.evals_since_best += 1
        return False


def train_policy(cfg: PolicyTrainConfig, show_progress: bool = True) -> dict[str, Any]:
    """Run the policy step to the end (resuming from out/checkpoint); returns the summary."""
    trainer = PolicyTrainer(cfg)
    out, st, main = trainer.out, trainer.state, trainer.acc.is_main_process
    log = out / "metrics.jsonl"
    t0, stopped_early = time.perf_counter(), False
    with progress_bar(disable=not (show_progress and main)) as bar:
        task = bar.add_task(f"policy step ({cfg.method})", total=cfg.steps, completed=st.step)
        if cfg.monitor_every and st.step == 0 and not st.history:
            st.history.append({"step": 0, "monitor/success": trainer.monitor()})
            trainer.keep_best(st.history[-1]["monitor/success"])
        while st.step < cfg.steps and not stopped_early:
            metrics = {"step": st.step + 1, **trainer.step()}
            if cfg.monitor_every and st.step % cfg.monitor_every == 0:
                metrics["monitor/success"] = trainer.monitor()
                trainer.keep_best(metrics["monitor/success"])
                p = cfg.early_stop_patience
                stopped_early = p is not None and st.evals_since_best >= p
            st.history.append(metrics)
            if main:
                with open(log, "a") as f:
                    f.write(json.dumps(metrics) + "\n")
                trainer.save(out / "checkpoint")
            trainer.acc.wait_for_everyone()
            bar.update(task, completed=st.step)
    summary = _finish(trainer, time.perf_counter() - t0, stopped_early)
    trainer.acc.wait_for_everyone()
    return summary


def _finish(trainer: PolicyTrainer, wall: float, stopped_early: bool) -> dict[str, Any]:
    """The kept model, the monitor plot and summary.json (written by the main process only)."""
    cfg, out, st = trainer.cfg, trainer.out, trainer.state
    summary = {
        "config": asdict(cfg), "steps": st.step, "stopped_early": stopped_early, "wall_s": round(wall, 1),
        "monitor/best_success": st.best_success, "monitor/best_step": st.best_step,
        "last": st.history[-1] if st.history else {},
    }
    if not trainer.acc.is_main_process:
        return summary
    if cfg.monitor_every and (out / "best").is_dir():
        tmp = temp_dir_for(out / "model")
        shutil.copytree(out / "best", tmp, dirs_exist_ok=True)
        replace_dir(tmp, out / "model")
    else:
        save_model(trainer.model, trainer.tokenizer, out / "model")
    plot_monitor(st.history, out / "reward_hacking.png")
    write_json(out / "summary.json", summary)
    return summary


def plot_monitor(history: list[dict[str, Any]], path: Path) -> None:
    """Mean PRM reward, KL and real success against steps (the paper's Fig. 3 effect)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key, style in (("prm/mean_reward", "-"), ("monitor/success", "o-"), ("policy/kl", ":")):
        pts = [(h["step"], h[key]) for h in history if key in h]
        if pts:
            ax.plot(*zip(*pts, strict=True), style, label=key)
    ax.set_xlabel("policy step")
    ax.legend()
    ax.set_title("PRM reward vs real success")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
