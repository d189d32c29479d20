"""Supervised fine-tuning on demonstrations: the initial policy π0 (AgentPRM, Choudhury 2025, §3).

One example per turn: the prompt the policy would see at that turn (`build_messages` → chat template
with the generation prompt) and the answer `format_answer(label)` + end-of-turn, tokenized exactly
as `agents.policy.encode_pair` does, so the policy, score mode and DPO all see the tokens SFT trained
on. Loss is on answer tokens only. Which turns and which label (`SFTConfig.labels`):
- "taken": every turn of each *won* episode, labelled with the action taken (behaviour cloning of
  demonstrations);
- "expert": every turn, won or lost, that carries an expert label (`Step.expert_action`, recorded
  when a rollout ran with `expert_labels`), labelled with the expert's action: DAgger's aggregate of
  the learner's own states relabelled by a teacher;
- "auto": per episode, "expert" when it carries labels, else "taken" (demos + DAgger rounds).

Packing: with the "episode" prompt style and the whole history in the prompt, turn t's prompt is a
prefix of turn t+1's, so one sequence (the last turn's prompt + its answer) holds every turn, and the
loss on all its answers costs one forward pass instead of one per turn (~5× fewer tokens on ALFWorld
demos). A turn whose label differs from the action taken (DAgger) cannot share the sequence, which
continues with the taken action: it becomes an example of its own.

Training is HF `Trainer`: checkpoints every `save_steps` under out/checkpoints, and a rerun with the
same `out` resumes from the newest complete one, so an interrupted run just gets started again.
The validation split is by game, so val loss measures new games, not new turns of seen games.
Under `accelerate launch`/`torchrun` the Trainer runs data parallel (DDP): `batch_size` is then per
process, so the global batch is batch_size × grad_accum × processes; the main process alone writes
model/ and summary.json and draws the progress bar.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rich.console import Console
from rich.progress import Progress
from transformers import (
    DataCollatorForSeq2Seq,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from agentprm.agents.policy import DEFAULT_HISTORY_WINDOW, encode_answer, encode_pair, encode_prompt
from agentprm.atomic import save_model, write_json
from agentprm.bounds import Count, Fraction, NonNegative, NonNegInt, Positive
from agentprm.contexts import contexts_from_episode
from agentprm.errors import ConfigError
from agentprm.models import cpu_bf16_if_native, load_causal_lm, load_tokenizer, pick_device, training_attention
from agentprm.progress import progress_bar
from agentprm.prompts import build_messages, format_answer, prompt_style
from agentprm.train.parallel import device_for
from agentprm.trajectory import Episode, load_episodes

__all__ = [
    "AnswerOnlyTrainer",
    "SFTConfig",
    "answer_only_loss",
    "contexts_from_episode",
    "episodes_to_examples",
    "episodes_to_rows",
    "pack_episode",
    "tokenize_example",
    "train_sft",
]


@dataclass
class SFTConfig:
    demos: list[str] = field(default_factory=list)
    """Trajectory files/folders of demonstrations; only won, non-failed episodes are used."""
    out: str = "runs/sft"
    """Run folder: checkpoints/, model/ (the final model), summary.json."""
    model: str = "smollm2"
    """Starting model spec (see `models.resolve_model`)."""
    epochs: Positive = 3.0
    """Passes over the training examples (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Optimizer steps to stop at (-1: use epochs). Resuming continues up to this total."""
    lr: Positive = 5e-5
    """Peak learning rate (cosine decay after warmup); ~2e-4 suits LoRA."""
    warmup: NonNegative = 0.03
    """Warmup as a fraction of all steps (< 1) or a number of steps (>= 1)."""
    weight_decay: NonNegative = 0.0
    """AdamW weight decay."""
    batch_size: Count = 8
    """Examples per device batch."""
    grad_accum: Count = 4
    """Batches per optimizer step (effective batch = batch_size × grad_accum)."""
    max_length: Count = 2048
    """Longest prompt+answer in tokens; longer examples are dropped (counted in the summary)."""
    val_fraction: Fraction = 0.1
    """Fraction of *games* held out for validation (0: no validation)."""
    history_window: NonNegInt | None = DEFAULT_HISTORY_WINDOW
    """Previous turns in each prompt; must match the policy's `history_window`."""
    save_steps: Count = 200
    """Checkpoint every this many optimizer steps."""
    save_total_limit: Count = 2
    """Checkpoints kept (oldest deleted)."""
    eval_steps: Count = 200
    """Validation loss every this many optimizer steps."""
    logging_steps: Count = 10
    """Train loss logged every this many optimizer steps (and after the first)."""
    seed: int = 0
    """Seeds the game split, shuffling, dropout and LoRA init."""
    max_examples: Count | None = None
    """Cap on training examples after the split (smoke runs); None: all."""
    lora: bool = False
    """Train LoRA adapters on all linear layers instead of every weight; merged before saving."""
    lora_r: Count = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scale numerator (scale = alpha / r)."""
    observation_loss: NonNegative = 0.0
    """Weight of an auxiliary language-model loss on the prompt tokens (observations, task): more to
    learn from each sequence for a model built from scratch; 0 for pretrained LMs."""
    labels: Literal["taken", "expert", "auto"] = "taken"
    """"taken" (actions of won episodes), "expert" (expert labels at every labelled state; DAgger) or
    "auto" (per episode: expert labels when it has any, else taken; DAgger aggregates with demos)."""
    pack: bool = True
    """Train on whole episodes as one sequence when the prompt style allows it (see module docstring)."""
    max_relabels: Count | None = None
    """Per episode, keep only the first k turns whose label differs from the action taken (each is a
    whole prompt of its own, the costly part of DAgger data; the first deviations are where the
    learner goes wrong). None: all."""
    relabel_from: Literal["start", "first_repeat"] = "start"
    """Which disagreements may be relabelled: from the episode's start, or only from its first repeated
    (observation, action) on. A greedy learner that fails loops; 390 of the 423 first-4 relabels in the
    fp32 π0's lost episodes came before that turn, where the ones read were another search order than
    the expert's, and after it the expert's label is a way out of the loop (measured: no better π0 for
    it, docs/results/cpu-small-dagger-fp32)."""
    device: str | None = None
    """"cpu" or "cuda" (None: CUDA if available)."""
    dtype: str | None = None
    """Weight dtype (None: fp32 master weights; on CUDA the forward runs under bf16 autocast)."""
    attn_implementation: str | None = None
    """Attention kernel for training ("eager", "sdpa"; None: eager on CUDA, see
    `models.training_attention` for the NaN it avoids)."""
    bf16_cpu: bool = False
    """bf16 autocast on the CPU too (~1.7× faster on CPUs with AVX512-BF16/AMX; fp32 master weights);
    ignored, with a warning, on CPUs without them, where it is many times slower."""
    progress: bool = True
    """Show the progress bar."""

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if min(self.batch_size, self.grad_accum, self.save_steps, self.eval_steps, self.logging_steps) < 1:
            raise ConfigError("batch_size, grad_accum, save_steps, eval_steps, logging_steps must be >= 1")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise ConfigError("give epochs > 0 or max_steps > 0")
        if self.labels not in LABELS:
            raise ConfigError(f"labels must be one of {', '.join(LABELS)}, got {self.labels!r}")
        if self.relabel_from not in RELABEL_FROM:
            raise ConfigError(f"relabel_from must be one of {', '.join(RELABEL_FROM)}, got {self.relabel_from!r}")


LABELS = ("taken", "expert", "auto")
RELABEL_FROM = ("start", "first_repeat")


def _turn_labels(ep: Episode, labels: str) -> list[str | None]:
    """The label of each turn (None: not a training turn), see the module docstring."""
    if ep.failed:
        return [None] * len(ep.steps)
    if labels == "expert" or (labels == "auto" and any(s.expert_action for s in ep.steps)):
        return [s.expert_action for s in ep.steps]
    return [s.action for s in ep.steps] if ep.won else [None] * len(ep.steps)


def first_repeat(ep: Episode) -> int | None:
    """The first turn whose (observation, action) already occurred in the episode: where a loop starts."""
    seen: set[tuple[str, str]] = set()
    for t, step in enumerate(ep.steps):
        if (step.observation, step.action) in seen:
            return t
        seen.add((step.observation, step.action))
    return None


def _labels(ep: Episode, labels: str, max_relabels: int | None, relabel_from: str = "start") -> list[str | None]:
    """The turn labels (`_turn_labels`), keeping those that agree with the action taken and, of those
    that do not, only the ones from `relabel_from` on, and of these the first `max_relabels` (None: all)."""
    turn_labels = _turn_labels(ep, labels)
    start = 0
    if relabel_from == "first_repeat":
        repeat = first_repeat(ep)
        start = len(ep.steps) if repeat is None else repeat
    out, seen = [], 0
    for t, (step, label) in enumerate(zip(ep.steps, turn_labels, strict=True)):
        differs = label is not None and label != step.action
        if differs and t < start:
            out.append(None)
            continue
        seen += differs
        out.append(None if differs and max_relabels is not None and seen > max_relabels else label)
    return out


def episodes_to_examples(
    episodes: list[Episode], history_window: int | None = DEFAULT_HISTORY_WINDOW, style: str = "react",
    labels: str = "taken", max_relabels: int | None = None, relabel_from: str = "start",
) -> list[dict[str, Any]]:
    """{prompt_messages, answer, game_id} per training turn (one example per turn, no packing)."""
    return [
        {"prompt_messages": build_messages(ctx, history_window, style=style), "answer": format_answer(label),
         "game_id": ep.game_id}
        for ep in episodes
        for ctx, label in zip(contexts_from_episode(ep), _labels(ep, labels, max_relabels, relabel_from),
                              strict=True)
        if label is not None
    ]


def tokenize_example(tokenizer: Any, ex: dict[str, Any]) -> dict[str, Any]:
    """input_ids = prompt + answer + end-of-turn; labels = -100 on the prompt (loss on the answer)."""
    prompt, answer = encode_pair(tokenizer, ex["prompt_messages"], ex["answer"])
    return {
        "input_ids": prompt + answer,
        "attention_mask": [1] * (len(prompt) + len(answer)),
        "labels": [-100] * len(prompt) + answer,
    }


def pack_episode(tokenizer: Any, ep: Episode, turn_labels: list[str | None]) -> list[dict[str, Any]] | None:
    """Rows for one episode in the "episode" style with the full history: one sequence with the loss
    on every turn whose label is the action taken, plus one row per turn labelled otherwise. None if
    the tokenizer breaks the prefix property (then the caller falls back to one row per turn)."""
    contexts = contexts_from_episode(ep)
    prompts = [encode_prompt(tokenizer, build_messages(c, None, style="episode")) for c in contexts]
    answers = [encode_answer(tokenizer, format_answer(s.action)) for s in ep.steps]
    ids = prompts[-1] + answers[-1]
    target = [-100] * len(ids)
    rows = []
    for t, (prompt, answer, label) in enumerate(zip(prompts, answers, turn_labels, strict=True)):
        if ids[len(prompt) : len(prompt) + len(answer)] != answer or ids[: len(prompt)] != prompt:
            return None
        if label == ep.steps[t].action:
            target[len(prompt) : len(prompt) + len(answer)] = answer
        elif label is not None:
            other = encode_answer(tokenizer, format_answer(label))
            rows.append({"input_ids": prompt + other, "attention_mask": [1] * (len(prompt) + len(other)),
                         "labels": [-100] * len(prompt) + other, "game_id": ep.game_id})
    if any(t != -100 for t in target):
        rows.insert(0, {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": target, "game_id": ep.game_id})
    return rows


def episodes_to_rows(
    tokenizer: Any, episodes: list[Episode], history_window: int | None, style: str, labels: str, pack: bool,
    max_relabels: int | None = None, relabel_from: str = "start",
) -> list[dict[str, Any]]:
    """Tokenized training rows (input_ids, attention_mask, labels, game_id) for SFT."""
    rows: list[dict[str, Any]] = []
    packable = pack and style == "episode" and history_window is None
    for ep in episodes:
        turn_labels = _labels(ep, labels, max_relabels, relabel_from)
        if not any(x is not None for x in turn_labels):
            continue
        packed = pack_episode(tokenizer, ep, turn_labels) if packable else None
        if packed is None:
            packed = [{**tokenize_example(tokenizer, ex), "game_id": ep.game_id}
                      for ex in episodes_to_examples([ep], history_window, style, labels, max_relabels, relabel_from)]
        rows.extend(packed)
    return rows


def split_by_game(
    examples: list[dict[str, Any]], val_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, val) with every game's turns on one side; at least one game each when possible."""
    games = sorted({ex["game_id"] for ex in examples})
    random.Random(seed).shuffle(games)
    n_val = min(len(games) - 1, math.ceil(val_fraction * len(games))) if val_fraction > 0 else 0
    val_games = set(games[:n_val])
    return [e for e in examples if e["game_id"] not in val_games], [e for e in examples if e["game_id"] in val_games]


def _drop_long(rows: list[dict[str, Any]], max_length: int) -> tuple[list[dict], int]:
    kept = [{k: v for k, v in r.items() if k != "game_id"} for r in rows if len(r["input_ids"]) <= max_length]
    if len(kept) < len(rows):
        msg = f"SFT: dropped {len(rows) - len(kept)} examples longer than max_length={max_length}"
        warnings.warn(msg, stacklevel=2)
    return kept, len(rows) - len(kept)


def build_datasets(
    cfg: SFTConfig, tokenizer: Any, style: str = "react"
) -> tuple[list[dict], list[dict], dict[str, int]]:
    """Tokenized (train, val) rows and counts for the summary."""
    rows = episodes_to_rows(tokenizer, load_episodes(cfg.demos), cfg.history_window, style, cfg.labels, cfg.pack,
                            cfg.max_relabels, cfg.relabel_from)
    if not rows:
        what = "won demonstration episodes" if cfg.labels == "taken" else "expert-labelled states"
        raise ConfigError(f"no {what} in {cfg.demos}; SFT needs them")
    train_rows, val_rows = split_by_game(rows, cfg.val_fraction, cfg.seed)
    if cfg.max_examples is not None:
        train_rows = random.Random(cfg.seed).sample(train_rows, min(cfg.max_examples, len(train_rows)))
    train, dropped = _drop_long(train_rows, cfg.max_length)
    val, dropped_val = _drop_long(val_rows, cfg.max_length)
    if not train:
        raise ConfigError(f"every training example is longer than max_length={cfg.max_length}")
    counts = {
        "train_examples": len(train),
        "val_examples": len(val),
        "dropped_too_long": dropped + dropped_val,
        "train_tokens": sum(len(r["input_ids"]) for r in train),
        "train_answer_tokens": sum(sum(t != -100 for t in r["labels"]) for r in train),
    }
    return train, val, counts


def last_good_checkpoint(ckpt_dir: Path) -> str | None:
    """Newest checkpoint that finished saving (Trainer writes trainer_state.json last) and whose
    weights open; a half-written one from a crash is skipped with a warning, not resumed into."""
    if not ckpt_dir.is_dir():
        return None
    ckpts = sorted(
        (p for p in ckpt_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for p in ckpts:
        if (p / "trainer_state.json").is_file() and _weights_readable(p):
            return str(p)
        warnings.warn(f"SFT: skipping incomplete or corrupt checkpoint {p}", stacklevel=2)
    return None


def _weights_readable(folder: Path) -> bool:
    from safetensors import safe_open

    files = list(folder.glob("*.safetensors"))
    try:
        for f in files:
            with safe_open(str(f), framework="pt"):
                pass
    except Exception:
        return False
    return bool(files)


def _load_model(cfg: SFTConfig) -> Any:
    from accelerate import PartialState

    set_seed(cfg.seed)
    # each process straight onto its own GPU, rather than all onto the first before Trainer moves them
    state = PartialState(cpu=pick_device(cfg.device).type == "cpu")
    model = load_causal_lm(cfg.model, device_for(state, cfg.device), cfg.dtype or "fp32")
    training_attention(model, cfg.attn_implementation)
    model.config.use_cache = False  # no KV cache while training
    if not cfg.lora:
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    return get_peft_model(model, lora)


def _training_args(cfg: SFTConfig, has_val: bool, cuda: bool) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(Path(cfg.out) / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup,
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy="steps" if has_val else "no",
        eval_steps=cfg.eval_steps,
        train_sampling_strategy="group_by_length",  # turns vary a lot in length: less padding
        include_num_input_tokens_seen="non_padding",
        remove_unused_columns=False,
        prediction_loss_only=True,
        bf16=cuda or cpu_bf16_if_native(cfg.bf16_cpu),
        use_cpu=not cuda,
        seed=cfg.seed,
        disable_tqdm=True,  # TrainerProgress shows the bar (and the loss) instead
        report_to="none",
    )


class TrainerProgress(TrainerCallback):
    """A `progress_bar` over a Trainer's optimizer steps: the latest train loss in the description,
    one plain line per validation. A resumed run starts the bar at the step it resumed from."""

    def __init__(self, name: str, console: Console | None = None):
        self.name = name
        self.console = console or Console()
        self.bar: Progress | None = None
        self.task: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not state.is_world_process_zero:  # one bar for a data-parallel run, not one per process
            return
        self.bar = progress_bar(console=self.console)
        self.bar.start()
        self.task = self.bar.add_task(self.name, total=state.max_steps, completed=state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if self.bar is None or not logs:
            return
        if "loss" in logs:
            self.bar.update(self.task, description=f"{self.name} loss {logs['loss']:.3f}")
        if "eval_loss" in logs:
            self.bar.console.print(f"  step {state.global_step}: validation loss {logs['eval_loss']:.4f}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


class _RunStats(TrainerCallback):
    """Where this run started (step, tokens, time): throughput of this run, not of the resumed total."""

    def __init__(self) -> None:
        self.step0 = self.tokens0 = 0
        self.t0 = time.perf_counter()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.step0, self.tokens0, self.t0 = state.global_step, state.num_input_tokens_seen, time.perf_counter()


def answer_only_loss(
    model: Any, batch: dict[str, torch.Tensor], num_items: Any = None, observation_weight: float = 0.0
) -> tuple[torch.Tensor, Any]:
    """Summed answer-token NLL / num_items (default: this batch's answer tokens); (loss, model output).
    With `observation_weight` > 0, plus that weight × the mean NLL of every other real token (the
    prompts: task, observations, markup): an auxiliary language-model loss that teaches a model built
    from scratch the game's language (e.g. that "go to shelf 1" is answered by "You arrive at shelf 1")
    from the same forward pass.

    Needs a LEFT-padded batch: then every row's answer ends at the last position and the LM head runs
    on the last k+1 positions only (k = longest answer) instead of producing (B, T, V) logits for
    prompt tokens that carry no loss. ~10 answer tokens vs ~600 prompt tokens per turn and a 49k
    vocabulary make that most of the memory and a large share of the FLOPs. Packed rows (answers all
    along the sequence) simply get logits from their first answer on. Position ids come from the
    attention mask, as in `agents.policy.sequence_logprobs`, so training and scoring see one layout."""
    labels, mask = batch["labels"], batch["attention_mask"]
    k = labels.shape[1] - 1 if observation_weight else labels.shape[1] - int((labels != -100).any(0).nonzero()[0])
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=mask,
        position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
        logits_to_keep=k + 1,
    )
    logits = out.logits[:, :-1].float()  # (B, k, V): predicts the last k tokens
    target = labels[:, -k:]
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
    )
    loss = nll / (num_items if num_items is not None else (target != -100).sum())
    if observation_weight:
        ids, real = batch["input_ids"][:, -k:], mask[:, -k:]
        other = ids.masked_fill((target != -100) | (real == 0), -100)
        lm = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), other.reshape(-1),
                                               ignore_index=-100)
        loss = loss + observation_weight * lm
    return loss, out


class AnswerOnlyTrainer(Trainer):
    """Trainer with `answer_only_loss`. With num_items_in_batch (all label tokens of the accumulated
    step) the loss is already scaled for gradient accumulation, Trainer's own convention. The
    observation loss is a training aid only: validation loss stays answer-only, comparable across runs."""

    observation_weight: float = 0.0

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """A checkpoint of a model with tied embeddings has no lm_head.weight (it *is* the embedding):
        tie again quietly instead of warning "missing keys" on every resume; other keys still warn."""
        tied = bool(getattr(self.model.config, "tie_word_embeddings", False))
        if tied and set(load_result.missing_keys) == {"lm_head.weight"} and not load_result.unexpected_keys:
            self.model.tie_weights()
            return
        super()._issue_warnings_after_load(load_result)

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        """Length grouping by the *global* batch: HF groups by the per-process batch, so the example
        order, and with it the loss curve, would change with the number of processes."""
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, LengthGroupedSampler):
            args = self.args
            sampler.batch_size = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
        return sampler

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        weight = self.observation_weight if model.training else 0.0
        loss, out = answer_only_loss(model, inputs, num_items_in_batch, weight)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            # num_items_in_batch counts every process's answer tokens, and DDP averages the gradients
            # over the processes: scale back up, as Trainer.compute_loss does (overridden here)
            loss = loss * self.accelerator.num_processes
        return (loss, out) if return_outputs else loss


def _make_trainer(cfg: SFTConfig, model: Any, tokenizer: Any, train: list, val: list, stats: _RunStats) -> Trainer:
    cuda = model.device.type == "cuda"
    trainer = AnswerOnlyTrainer(
        model=model,
        args=_training_args(cfg, bool(val), cuda),
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, pad_to_multiple_of=8 if cuda else None),
        train_dataset=train,
        eval_dataset=val or None,
        processing_class=tokenizer,
        callbacks=[stats, *([TrainerProgress("SFT")] if cfg.progress else [])],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log as a raw dict; TrainerProgress shows the loss
    trainer.observation_weight = cfg.observation_loss
    return trainer


def _losses(log_history: list[dict[str, Any]]) -> dict[str, float]:
    train = [h["loss"] for h in log_history if "loss" in h]
    val = [h["eval_loss"] for h in log_history if "eval_loss" in h]
    out = {"sft/train_loss_first": train[0], "sft/train_loss": train[-1]} if train else {}
    return out | ({"sft/val_loss": val[-1]} if val else {})


def train_sft(cfg: SFTConfig) -> dict[str, Any]:
    """Fine-tune `cfg.model` on the demos; returns the metrics also written to out/summary.json."""
    if not cfg.demos:
        raise ConfigError("SFT needs demonstrations: set demos to trajectory files or folders")
    out = Path(cfg.out)
    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "left"  # answers end every row: see AnswerOnlyTrainer
    model = _load_model(cfg)
    train, val, counts = build_datasets(cfg, tokenizer, prompt_style(model))
    stats = _RunStats()
    trainer = _make_trainer(cfg, model, tokenizer, train, val, stats)
    resume = last_good_checkpoint(out / "checkpoints")
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - stats.t0
    if val:
        trainer.evaluate()
    final = trainer.model.merge_and_unload() if cfg.lora else trainer.model
    final.config.use_cache = True
    main = trainer.is_world_process_zero()
    if main:
        save_model(final, tokenizer, out / "model")
    tokens = trainer.state.num_input_tokens_seen - stats.tokens0
    metrics = {
        **{f"sft/{k}": v for k, v in counts.items()},
        **_losses(trainer.state.log_history),
        "sft/train_loss_mean": result.training_loss,
        "sft/global_step": trainer.state.global_step,
        "sft/steps_this_run": trainer.state.global_step - stats.step0,
        "sft/resumed_from": resume,
        "sft/tokens": tokens,
        "sft/tokens_per_s": tokens / wall if wall > 0 else 0.0,
        "sft/wall_s": wall,
    }
    curve = [[h["step"], h["loss"]] for h in trainer.state.log_history if "loss" in h]  # [step, train loss]
    summary = {"metrics": metrics, "train_losses": curve, "config": asdict(cfg), "model": str(out / "model")}
    if main:
        write_json(out / "summary.json", summary)
    trainer.accelerator.wait_for_everyone()  # model/ is complete before any process returns
    return metrics
