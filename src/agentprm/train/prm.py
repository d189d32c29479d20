"""The process reward model: a causal-LM backbone with a scalar head, trained on Monte Carlo targets.

`PRM` reads the same text the policy sees (chat template of `build_messages` + `format_answer`), runs
the backbone's base model (no LM head, so no vocabulary-sized logits) and applies a Linear head to
the hidden state of the LAST real token of prompt + answer: by then the causal model has read the
whole state and the action. Sequences are right-padded and the head index comes from the attention
mask, so padding never changes a score; overlong prompts are cut from the left, keeping the answer.

What the answer is (`PRM.reads`, set by `PRMConfig.reads` and saved in prm.json): "answer", the
paper's, is the policy's whole answer, `format_answer(action, reason)` (a `REASON: r` line, then
`ACTION: a`), so the PRM judges the reasoning with the command; "action" is `ACTION: a` alone. Either
way the answer is rebuilt from the parsed reason and the command actually sent, not copied from the
raw text, so a targets row, a Best-of-N candidate and a DPO sample with the same (reason, action) are
one string. Without a reason (constrained/score policies, experts, old trajectories) both modes give
exactly `ACTION: a`, so nothing changes for policies that answer with a bare command. "state" reads
no answer at all: the score is read at the prompt's last token, a value V(s) rather than Q(s, a) (the
value model of process reward shaping, `agentprm.shaping`, trained on `targets --values` rows).

`train_prm` fits it with soft BCE on Q̂ (Eq. 4; calibrated probabilities of eventual success) or
with Bradley–Terry on same-state pairs (only the ordering; scores not calibrated), then reports
validation soft BCE, Brier score and AUC for the success label (q > 0), a reliability diagram and
namespaced metrics (`prm/val_bce`, `prm/brier`, `prm/auc`, ...). The loop is plain torch: mixed
precision by bf16 autocast on CUDA over fp32 master weights, transformers' LR schedule, one
checkpoint per epoch (model in safetensors, optimizer tensors loaded with weights_only=True).
Data parallel under `accelerate launch`/`torchrun` through an `accelerate.Accelerator`: `batch_size`
stays the global batch, each process trains on its share of it and scores its share of the
validation set; the main process alone writes files and draws the progress bar (`train.parallel`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import torch
from torch import nn

from agentprm.agents.policy import run_after_prompts
from agentprm.atomic import replace_dir, temp_dir_for, write_json
from agentprm.bounds import Count, Fraction, NonNegative, NonNegInt, Positive
from agentprm.errors import ConfigError, DataNotFoundError, ModelLoadError
from agentprm.models import load_causal_lm, load_tokenizer, training_attention
from agentprm.prompts import TurnContext, build_messages, format_answer, prompt_style
from agentprm.targets import read_rows, row_to_context
from agentprm.train.losses import bradley_terry, soft_bce
from agentprm.train.metrics import expected_calibration_error, plot_calibration, reliability_bins, roc_auc
from agentprm.train.parallel import (
    device_for,
    gather_list,
    global_sums,
    loss_weight,
    make_accelerator,
    my_share,
)

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)
T = TypeVar("T")
PRM_FORMAT, PRM_VERSION = "agentprm.prm", 2
"""Version 2 adds `reads` to prm.json; a version-1 file has none and reads as "action" (what it was
trained on)."""
LOSSES = ("soft-bce", "bradley-terry")
Reads = Literal["answer", "action", "state"]
READS: tuple[str, ...] = ("answer", "action", "state")


def _autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA (fp32 master weights stay exact); a no-op elsewhere."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of the last 1 in each row of a (B, T) mask; right or left padding alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(dim=1)


class PRM(nn.Module):
    """Scores (state, action) pairs: σ(head(h_last)) ≈ probability the episode is eventually won."""

    def __init__(self, backbone: Any, tokenizer: Any, history_window: int | None = None, max_length: int = 1024,
                 reads: Reads = "action"):
        super().__init__()
        if reads not in READS:
            raise ConfigError(f"PRM: reads={reads!r}; choose one of {', '.join(READS)}")
        self.backbone = backbone  # an AutoModelForCausalLM; saved whole so it stays loadable as an LM
        self.tokenizer = tokenizer
        self.history_window = history_window
        self.max_length = max_length
        self.reads = reads
        """"answer" (reason + action) or "action": see the module docstring. "action" by default, so a
        PRM built outside `train_prm` (the InversePRM, which trains on actions) reads what it learned."""
        self.prompt_style = prompt_style(backbone)
        self.head = nn.Linear(backbone.config.hidden_size, 1).to(next(backbone.parameters()).device)
        # Zero init: every score starts at σ(0) = 0.5, so early steps fit the head rather than undo a
        # random one (large hidden-state outliers of real LMs would make a random head's z huge).
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_spec(cls, spec: str, device: str | None = None, dtype: str | None = None,
                  history_window: int | None = None, max_length: int = 1024, reads: Reads = "action") -> PRM:
        """A PRM with a fresh head on any model spec `models.resolve_model` accepts."""
        return cls(load_causal_lm(spec, device, dtype), load_tokenizer(spec), history_window, max_length, reads)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def answer(self, action: str, reason: str | None = None) -> str:
        """The answer text this PRM reads after the prompt: `format_answer(action, reason)` when it
        reads the whole answer, nothing when it reads the state alone (a value model), else (and
        whenever `reason` is None) exactly `ACTION: a`."""
        if self.reads == "state":
            return ""
        return format_answer(action, reason if self.reads == "answer" else None)

    def answers(self, actions: Sequence[str], reasons: Sequence[str | None] | None = None) -> list[str]:
        """`answer` for each action; `reasons` None (or shorter lists of None) means no reasons."""
        reasons = [None] * len(actions) if reasons is None else reasons
        return [self.answer(a, r) for a, r in zip(actions, reasons, strict=True)]

    def texts(self, contexts: Sequence[TurnContext], actions: Sequence[str],
              reasons: Sequence[str | None] | None = None) -> list[str]:
        """prompt (chat template, generation prompt on) + answer: the policy's own text for a turn."""
        return [p + a for p, a in zip(self.prompts(contexts), self.answers(actions, reasons), strict=True)]

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Untruncated ids (the template already holds any special tokens); `collate` truncates."""
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    def collate(self, ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (B, T) input ids and attention mask; each sequence keeps its last
        `max_length` tokens, so the answer (at the end) survives truncation."""
        ids = [list(x)[-self.max_length :] for x in ids]
        width = max(len(x) for x in ids)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[i, : len(x)] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        base = self.backbone.base_model
        if base is not self.backbone:  # the decoder without the LM head
            return base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.hidden_states[-1]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor | None = None,
                cols: torch.Tensor | None = None) -> torch.Tensor:
        """(B,) raw scores z (logits of success) of (B, T) right-padded sequences (as `collate` makes;
        left padding would shift the position ids of the real tokens), read at each last real token;
        or, given `rows` and `cols`, the scores at those positions ((rows[j], cols[j]) is the last
        token of an answer: one packed episode gives the score of every one of its turns). One entry
        point for both, because DDP synchronises gradients only of what runs through `forward`."""
        hidden = self._hidden(input_ids, attention_mask)  # (B, T, H)
        if rows is None or cols is None:
            rows = torch.arange(hidden.shape[0], device=hidden.device)
            cols = last_token_index(attention_mask)
        return self.head(hidden[rows, cols].to(self.head.weight.dtype)).squeeze(-1).float()  # (B,) or (J,)

    def scores_at(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
                  cols: torch.Tensor) -> torch.Tensor:
        """Raw scores read at chosen positions (see `forward`)."""
        return self(input_ids, attention_mask, rows, cols)

    def prompts(self, contexts: Sequence[TurnContext]) -> list[str]:
        """The policy's prompt for each context (chat template, generation prompt on)."""
        return [self.tokenizer.apply_chat_template(build_messages(c, self.history_window, style=self.prompt_style),
                                                   tokenize=False, add_generation_prompt=True) for c in contexts]

    @torch.no_grad()
    def logits(self, contexts: Sequence[TurnContext], actions: Sequence[str], batch_size: int = 16,
               reasons: Sequence[str | None] | None = None,
               on_batch: Callable[[int], None] | None = None) -> list[float]:
        """Raw scores z for many pairs, in input order. Pairs that share a prompt (Best-of-N's
        candidates, DPO's samples) read it once: its KV cache is computed once and each candidate's
        answer is run on top of it (`_shared_prompt_logits`); the score is the same as `forward` on
        prompt + answer. Pairs that would be cut to `max_length` go through `forward` in length-sorted
        batches. `reasons[i]` goes with `actions[i]` (see `answer`). `on_batch(k)` is called after each
        batch with the k pairs it scored (a progress bar's hook)."""
        if not contexts:  # e.g. a process's share of a validation set smaller than the process count
            return []
        prompts = self.prompts(contexts)
        answers = self.answers(actions, reasons)
        p_ids = self.token_ids(prompts)
        a_ids = self.token_ids(answers)
        scores = [0.0] * len(prompts)
        shared = self.backbone.base_model is not self.backbone
        by_forward = not shared or self.reads == "state"  # no answer to run on top of a shared prompt
        long = [i for i in range(len(prompts)) if by_forward or len(p_ids[i]) + len(a_ids[i]) > self.max_length]
        short = sorted(set(range(len(prompts))) - set(long), key=lambda i: -len(p_ids[i]))
        was_training = self.training
        self.eval()
        try:
            groups: dict[str, list[int]] = {}
            for i in short:
                groups.setdefault(prompts[i], []).append(i)
            keys = list(groups)
            for start in range(0, len(keys), batch_size):
                members = [groups[k] for k in keys[start : start + batch_size]]
                with _autocast(self.device):
                    z = self._shared_prompt_logits([p_ids[m[0]] for m in members],
                                                   [[a_ids[i] for i in m] for m in members])
                for i, v in zip([i for m in members for i in m], z.tolist(), strict=True):
                    scores[i] = v
                if on_batch is not None:
                    on_batch(sum(len(m) for m in members))
            ids = [p_ids[i] + a_ids[i] for i in long]
            order = sorted(range(len(ids)), key=lambda j: -len(ids[j]))
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                with _autocast(self.device):
                    z = self(*self.collate([ids[j] for j in chunk]))
                for j, v in zip(chunk, z.tolist(), strict=True):
                    scores[long[j]] = v
                if on_batch is not None:
                    on_batch(len(chunk))
        finally:
            self.train(was_training)
        return scores

    def _shared_prompt_logits(self, prompts: list[list[int]], answers: list[list[list[int]]]) -> torch.Tensor:
        """Scores of answers[g][j] after prompts[g], flattened in (g, j) order, each prompt read once."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        _, out, _, a_mask = run_after_prompts(self.backbone.base_model, prompts, answers, pad)
        hidden = out.last_hidden_state  # (C, k, H)
        last = hidden[torch.arange(hidden.shape[0], device=hidden.device), a_mask.sum(-1) - 1]  # (C, H)
        return self.head(last.to(self.head.weight.dtype)).squeeze(-1).float()

    def score(self, contexts: Sequence[TurnContext], actions: Sequence[str], batch_size: int = 16,
              reasons: Sequence[str | None] | None = None) -> list[float]:
        """σ(z): the PRM's probability of eventual success for each (context, answer); no grad."""
        return torch.sigmoid(torch.tensor(self.logits(contexts, actions, batch_size, reasons))).tolist()

    def save(self, path: str | Path) -> Path:
        """backbone/ (save_pretrained: weights in safetensors, config, tokenizer), head.safetensors,
        prm.json. Written to a temp folder and renamed into place; no pickle anywhere."""
        from safetensors.torch import save_file

        path = Path(path)
        tmp = temp_dir_for(path)
        self.backbone.save_pretrained(tmp / "backbone")
        self.tokenizer.save_pretrained(tmp / "backbone")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  tmp / "head.safetensors")
        meta = {"format": PRM_FORMAT, "version": PRM_VERSION, "hidden_size": self.head.in_features,
                "history_window": self.history_window, "max_length": self.max_length, "reads": self.reads}
        (tmp / "prm.json").write_text(json.dumps(meta, indent=2) + "\n")
        replace_dir(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, dtype: str | None = None,
             value_model: bool | None = None) -> PRM:
        """A saved PRM; `path` may also be a `train_prm` output folder (its model/ is used). With
        `value_model` True (shaping) it must read the state alone, with False (scoring actions) it must
        not; a mismatch is a ConfigError, raised before any weight is loaded."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / "prm.json").is_file() and (path / "model" / "prm.json").is_file():
            path = path / "model"
        if not (path / "prm.json").is_file():
            raise ModelLoadError(f"no PRM at {path} (no prm.json); give a folder written by PRM.save/train_prm")
        try:
            meta = json.loads((path / "prm.json").read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"{path}/prm.json is corrupt ({e}); retrain the PRM or restore the file") from e
        if not isinstance(meta, dict) or meta.get("format") != PRM_FORMAT or int(meta.get("version", 0)) > PRM_VERSION:
            raise ModelLoadError(f"{path}/prm.json is not an {PRM_FORMAT} v<={PRM_VERSION} record")
        missing = [k for k in ("history_window", "max_length") if k not in meta]
        if missing:
            raise ModelLoadError(f"{path}/prm.json lacks {', '.join(missing)}; retrain the PRM or restore the file")
        reads = meta.get("reads", "action")  # version 1 files: trained on the action alone
        if reads not in READS:
            raise ModelLoadError(f"{path}/prm.json has reads={reads!r}, not one of {', '.join(READS)}; retrain the "
                                 "PRM or restore the file")
        if value_model is True and reads != "state":
            raise ConfigError(f"{path} is a PRM that reads the {reads}, not a value model; train one with "
                              "`agentprm targets --values` then `agentprm train-prm --reads state`")
        if value_model is False and reads == "state":  # it would score every action of a state alike
            raise ConfigError(f"{path} reads the state alone (a value model for shaping); this step needs a PRM "
                              "that reads actions")
        prm = cls.from_spec(str(path / "backbone"), device, dtype, meta["history_window"], meta["max_length"], reads)
        head = path / "head.safetensors"
        try:
            prm.head.load_state_dict(load_file(head, device=str(prm.device)))
        except FileNotFoundError as e:
            raise ModelLoadError(f"{head} is missing; retrain the PRM or restore the file") from e
        except (SafetensorError, RuntimeError, OSError, ValueError) as e:  # bad header, wrong shapes
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelLoadError(f"{head} is corrupt or from another PRM ({first}); retrain or restore it") from e
        return prm


def row_reasons(rows: Sequence[Mapping[str, Any]], column: str = "reason") -> list[str | None]:
    """The reasons of targets rows (or pairs) for `PRM.answer`; targets written before rows carried
    reasons have no such column and read as None, i.e. `ACTION: a` alone."""
    return [r.get(column) for r in rows]


def evaluate(prm: PRM, rows: Sequence[dict], pairs: Sequence[dict], batch_size: int,
             acc: Accelerator | None = None, progress: bool = False) -> dict[str, Any]:
    """Validation metrics. Label of a row = "episode won" (Q̂ > 0, i.e. some visit led to a win: the
    row's `q_mc`, which differs from the trained-on q only for shaped targets; rows written before
    `q_mc` existed use q).
    With an Accelerator of several processes each scores its share and every process gets all scores.
    With `progress` the main process shows a bar over the pairs it scores: on a CPU a validation split of
    whole-episode prompts takes minutes (measured: 361 of a `train-prm`'s 566 s came after its 3 training epochs,
    for 2,743 rows and 90 pairs of the 4.4 M model), which would otherwise pass in silence."""
    from agentprm.progress import progress_bar

    if not rows:
        return {}
    main = acc is None or acc.is_main_process
    with progress_bar(disable=not (progress and main)) as bar:
        share = 1 if acc is None else acc.num_processes  # the main process scores about 1/share of them
        task = bar.add_task("PRM validation", total=-(-(len(rows) + 2 * len(pairs)) // share))
        return _evaluate(prm, rows, pairs, batch_size, acc, lambda k: bar.advance(task, k))


def _evaluate(prm: PRM, rows: Sequence[dict], pairs: Sequence[dict], batch_size: int, acc: Accelerator | None,
              on_batch: Callable[[int], None]) -> dict[str, Any]:
    def logits(contexts: list[TurnContext], actions: list[str], reasons: list[str | None]) -> list[float]:
        if acc is None:
            return prm.logits(contexts, actions, batch_size, reasons, on_batch)
        mine = my_share(acc, list(zip(contexts, actions, reasons, strict=True)))
        return gather_list(acc, prm.logits([c for c, _, _ in mine], [a for _, a, _ in mine], batch_size,
                                           [r for _, _, r in mine], on_batch))

    z = torch.tensor(logits([row_to_context(r) for r in rows], [r["action"] for r in rows], row_reasons(rows)))
    p = torch.sigmoid(z).numpy()
    q = np.array([r["q"] for r in rows])
    won = (np.array([r.get("q_mc", r["q"]) for r in rows]) > 0).astype(float)
    bins = reliability_bins(p, won)
    m: dict[str, Any] = {
        "prm/val_bce": soft_bce(z, torch.tensor(q)).item(),
        "prm/brier": float(np.mean((p - won) ** 2)),
        "prm/auc": roc_auc(p, won.astype(bool)),
        "prm/ece": expected_calibration_error(bins),
        "prm/val_mse_q": float(np.mean((p - q) ** 2)),
        "prm/val_rows": len(rows),
        "prm/reliability": bins,
    }
    if pairs:
        ctx = [row_to_context(r) for r in pairs]
        zc = torch.tensor(logits(ctx, [r["chosen"] for r in pairs], row_reasons(pairs, "reason_chosen")))
        zr = torch.tensor(logits(ctx, [r["rejected"] for r in pairs], row_reasons(pairs, "reason_rejected")))
        m["prm/val_bt"] = bradley_terry(zc, zr).item()
        m["prm/val_pair_acc"] = float((zc > zr).float().mean())
    return m


def evaluate_prm(prm_path: str | Path, data: str | Path, split: str = "val", batch_size: int = 64,
                 device: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Any saved PRM (an AgentPRM PRM, a Bradley–Terry one, an InversePRM) scored on any targets folder with the
    metrics `train_prm` reports on its own validation split: AUC and calibration against "episode won", Brier,
    same-state pair accuracy. Why: PRMs trained on different data are only comparable on turns none of them
    trained on, e.g. targets built from the loop's held-out plays (an InversePRM never reads an outcome; here the
    outcomes are read only to measure it). `split`: val, train or all (both files)."""
    if split not in ("val", "train", "all"):
        raise ConfigError(f"eval-prm: split={split!r} must be val, train or all")
    data = Path(data)
    if targets_kind(data) == "values":
        raise ConfigError(f"eval-prm: {data} holds state values (targets --values), not Q̂ per action")
    names = ["val", "train"] if split == "all" else [split]
    if not any((data / f"{n}.parquet").is_file() for n in names):
        raise DataNotFoundError(f"eval-prm: no {' or '.join(f'{n}.parquet' for n in names)} under {data}; give a "
                                "folder written by `agentprm targets`")
    parts = [read_split(data, n) for n in names]
    rows, pairs = [r for rs, _ in parts for r in rs], [p for _, ps in parts for p in ps]
    if not rows:
        raise DataNotFoundError(f"eval-prm: no rows in the {split} split of {data}")
    prm = PRM.load(prm_path, device, value_model=False)
    return {"prm": str(prm_path), "data": str(data), "split": split, "pairs": len(pairs),
            **evaluate(prm, rows, pairs, batch_size, progress=progress)}


# ----------------------------------------------------------------------------- training


@dataclass
class PRMConfig:
    """Everything `train_prm` needs; the resolved config is written to out/config.json."""

    data: str
    """Folder written by `targets.build_targets` (train/val parquet, pairs_*.parquet)."""
    out: str
    """Run folder: model/, checkpoint/, calibration.png, summary.json, config.json."""
    model: str = "smollm2"
    """Backbone spec for `models.load_causal_lm` ("smollm2", "tiny", a folder, a hub id)."""
    loss: Literal["soft-bce", "bradley-terry"] = "soft-bce"
    """"soft-bce" (Eq. 4 on Q̂; calibrated) or "bradley-terry" (same-state pairs; ranking only)."""
    reads: Reads = "answer"
    """What the PRM reads after the prompt: "answer" (the paper's: the policy's whole answer, `REASON:
    r` + `ACTION: a`, the row's `reason` from targets), "action" (`ACTION: a` alone) or "state" (no
    answer: a value model, on `targets --values` rows; the two must go together). Saved in
    prm.json, so Best-of-N and the policy step score the way it was trained. Rows without a reason
    (constrained/score policies, experts, older targets) read `ACTION: a` in both modes."""
    epochs: Count = 1
    lr: Positive = 1e-5
    """Peak learning rate (AdamW), shared by backbone and head."""
    weight_decay: NonNegative = 0.0
    scheduler: str = "cosine"
    """Any `transformers.get_scheduler` name."""
    warmup_ratio: Fraction = 0.05
    """Share of all optimizer steps spent warming up."""
    batch_size: Count = 8
    """Sequences (soft-bce: a row, or a whole packed episode) or pairs (bradley-terry, i.e. 2×
    sequences) per optimizer step."""
    eval_batch_size: Count = 32
    max_length: Count = 1024
    """Tokens kept per sequence (cut from the left; the answer is never cut)."""
    history_window: NonNegInt | None = None
    """Previous turns shown in the prompt (None: all); saved with the PRM and reused at scoring."""
    max_grad_norm: Positive = 1.0
    eval_each_epoch: bool = True
    """Validate after every epoch (else once at the end)."""
    seed: int = 0
    device: str = "auto"
    dtype: str = "fp32"
    """Master-weight dtype; on CUDA the forward passes run under bf16 autocast anyway."""
    max_rows: Count | None = None
    """Use at most this many training (and validation) examples, a seeded sample; for smoke runs."""
    progress: bool = True
    """Show a progress bar per epoch."""
    pack: bool = True
    """soft-bce with the "episode" prompt style and the whole history: train on whole episodes, every
    turn's score read in one pass (`episodes_train.parquet` from targets); else one sequence per row."""

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"prm: loss={self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.reads not in READS:
            raise ConfigError(f"prm: reads={self.reads!r}; choose one of {', '.join(READS)}")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("prm: epochs, batch_size and eval_batch_size must be >= 1")
        if self.lr <= 0 or self.max_length < 8:
            raise ConfigError(f"prm: need lr > 0 and max_length >= 8 (got lr={self.lr}, max_length={self.max_length})")
        if not (Path(self.data) / "train.parquet").is_file():
            raise ConfigError(f"prm: no {Path(self.data) / 'train.parquet'}; run the targets stage first")
        values = targets_kind(self.data) == "values"
        if values != (self.reads == "state"):
            raise ConfigError(f"prm: reads={self.reads!r} on {'value' if values else 'state–action'} targets "
                              f"({self.data}); a value model reads the state (--reads state) of `targets --values` "
                              "rows, a PRM reads an action or answer of ordinary targets")


def targets_kind(data: str | Path) -> str:
    """"q", "values" or "shaped": what `targets` wrote under `data` (its summary.json; "q" if none)."""
    try:
        return str(json.loads((Path(data) / "summary.json").read_text(encoding="utf-8")).get("targets/kind", "q"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return "q"


def seeded_subset(items: list[T], n: int | None, seed: int) -> list[T]:
    """At most `n` of `items` (all when `n` is None), a seeded sample kept in input order, so a capped
    run reads the same rows (or transitions) every time it is resumed or repeated."""
    if n is None or len(items) <= n:
        return items
    keep = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed))[:n]
    return [items[i] for i in sorted(keep.tolist())]


def read_split(data: str | Path, split: str) -> tuple[list[dict], list[dict]]:
    """(rows, pairs) of one split of a targets folder; a missing file reads as empty."""
    data = Path(data)
    rows = read_rows(data / f"{split}.parquet") if (data / f"{split}.parquet").is_file() else []
    pairs = read_rows(data / f"pairs_{split}.parquet") if (data / f"pairs_{split}.parquet").is_file() else []
    return rows, pairs


def _load_split(cfg: PRMConfig, split: str) -> tuple[list[dict], list[dict]]:
    """(rows, pairs) of a split, capped by `max_rows` (a seeded subset)."""
    rows, pairs = read_split(cfg.data, split)
    return seeded_subset(rows, cfg.max_rows, cfg.seed), seeded_subset(pairs, cfg.max_rows, cfg.seed)


def _packed_examples(prm: PRM, rows: list[dict], chains: list[dict]) -> tuple[list[tuple], set[str]]:
    """One (ids, [(position, q), ...]) example per episode whose rows are all present: the text of its
    last turn, which (with the "episode" prompt style and the whole history) holds every earlier
    turn's prompt + answer as a prefix, labelled at the last token of each answer; every row is
    labelled once (the first episode that holds it). Returns the examples and the keys they cover."""
    by_key = {r["key"]: r for r in rows}
    examples, used = [], set()
    for chain in chains:
        keys = list(chain["keys"])
        if not keys or any(k not in by_key for k in keys):
            continue
        chain_rows = [by_key[k] for k in keys]
        texts = prm.texts([row_to_context(r) for r in chain_rows], [r["action"] for r in chain_rows],
                          row_reasons(chain_rows))
        ids = prm.token_ids(texts)
        full = ids[-1]
        if any(full[: len(x)] != x for x in ids):  # the tokenizer broke the prefix property: unpacked
            continue
        labels = [(len(x) - 1, float(by_key[k]["q"])) for x, k in zip(ids, keys, strict=True) if k not in used]
        used.update(keys)
        if labels:
            examples.append((full, labels))
    return examples, used


def _examples(prm: PRM, cfg: PRMConfig, rows: list[dict], pairs: list[dict]) -> list[tuple]:
    """Tokenised training examples: (ids, [(position, q), ...]) for soft-bce (one labelled position
    per row, or a whole packed episode, see `_packed_examples`), (ids_chosen, ids_rejected) for pairs.
    Without pairs the list is empty (and the PRM stays untrained, `train_prm`), so a loop iteration
    whose rollouts gave no preference does not stop the run."""
    if cfg.loss == "soft-bce":
        examples: list[tuple] = []
        used: set[str] = set()
        chains_file = Path(cfg.data) / "episodes_train.parquet"
        if cfg.pack and prm.prompt_style == "episode" and prm.history_window is None and chains_file.is_file():
            examples, used = _packed_examples(prm, rows, read_rows(chains_file))
        rest = [r for r in rows if r["key"] not in used]
        if rest:
            ids = prm.token_ids(prm.texts([row_to_context(r) for r in rest], [r["action"] for r in rest],
                                          row_reasons(rest)))
            examples += [(x, [(len(x) - 1, float(r["q"]))]) for x, r in zip(ids, rest, strict=True)]
    else:
        if not pairs:  # the tokenizer cannot take an empty batch
            return []
        ctx = [row_to_context(p) for p in pairs]
        chosen = prm.token_ids(prm.texts(ctx, [p["chosen"] for p in pairs], row_reasons(pairs, "reason_chosen")))
        rejected = prm.token_ids(prm.texts(ctx, [p["rejected"] for p in pairs], row_reasons(pairs, "reason_rejected")))
        examples = list(zip(chosen, rejected, strict=True))
    if not examples and cfg.loss == "soft-bce":
        raise ConfigError(f"prm: no training rows in {Path(cfg.data) / 'train.parquet'}")
    if not examples:  # a data outcome, not a mistake: e.g. rollouts that never won, so every Q̂ is 0
        log.warning("prm: no Bradley–Terry pairs in %s (no state with two actions whose Q̂ differ by delta): "
                    "the PRM is left untrained, every score 0.5; lower targets delta, roll out more, or use "
                    "soft-bce", Path(cfg.data) / "pairs_train.parquet")
    return examples


def _data_stats(examples: list[tuple], max_length: int, loss: str) -> dict[str, Any]:
    """How many sequences `collate` will cut from the left (their oldest history is lost)."""
    lengths = [len(e[0]) for e in examples] if loss == "soft-bce" else [len(x) for e in examples for x in e]
    lengths = lengths or [0]  # no Bradley–Terry pairs
    truncated = sum(n > max_length for n in lengths)
    if truncated:
        log.warning("prm: %d of %d sequences exceed max_length=%d and lose their start; raise max_length "
                    "or lower history_window", truncated, len(lengths), max_length)
    labels = sum(len(e[1]) for e in examples) if loss == "soft-bce" else len(examples)
    return {"prm/data/train_examples": len(examples), "prm/data/train_labels": labels,
            "prm/data/max_tokens": max(lengths), "prm/data/mean_tokens": float(np.mean(lengths)),
            "prm/data/truncated": truncated}


def _cut_left(ids: list[int], labels: list[tuple[int, float]], max_length: int) -> tuple[list[int], list]:
    """Keep the last max_length tokens; positions move with them, labels cut off are dropped."""
    cut = max(0, len(ids) - max_length)
    return ids[cut:], [(p - cut, q) for p, q in labels if p >= cut]


def _batch_loss(model: Any, prm: PRM, batch: list[tuple], loss: str) -> tuple[torch.Tensor, int]:
    """(loss, real tokens) of one batch; pairs go through one forward pass of 2B sequences. `model` is
    `prm` itself or its DDP wrapper (the forward pass must go through it)."""
    if loss == "soft-bce":
        cut = [_cut_left(ids, labels, prm.max_length) for ids, labels in batch]
        input_ids, mask = prm.collate([ids for ids, _ in cut])
        where = [(b, p, q) for b, (_, labels) in enumerate(cut) for p, q in labels]
        rows, cols, q = (torch.tensor(x, device=input_ids.device) for x in zip(*where, strict=True))
        z = model(input_ids, mask, rows, cols)
        return soft_bce(z, q.float()), int(mask.sum())
    input_ids, mask = prm.collate([c for c, _ in batch] + [r for _, r in batch])
    z = model(input_ids, mask)
    return bradley_terry(z[: len(batch)], z[len(batch) :]), int(mask.sum())


def _items(batch: list[tuple], loss: str) -> int:
    """What the batch loss averages over: labelled positions (soft-bce) or pairs (bradley-terry)."""
    return sum(len(labels) for _, labels in batch) if loss == "soft-bce" else len(batch)


def _save_checkpoint(out: Path, prm: PRM, opt: torch.optim.Optimizer, sched: Any, state: dict) -> None:
    tmp = out / f".checkpoint.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    prm.save(tmp / "model")
    torch.save(opt.state_dict(), tmp / "optimizer.pt")  # tensors and plain containers only
    torch.save(sched.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    replace_dir(tmp, out / "checkpoint")


def _resume(cfg: PRMConfig, device: str | None) -> tuple[PRM, dict | None]:
    """The checkpoint's model and state when out/checkpoint exists, else a fresh PRM."""
    ckpt = Path(cfg.out) / "checkpoint"
    if not (ckpt / "state.json").is_file():
        return PRM.from_spec(cfg.model, device, cfg.dtype, cfg.history_window, cfg.max_length, cfg.reads), None
    state = json.loads((ckpt / "state.json").read_text())
    saved = {"reads": "action", **state["config"]}  # checkpoints from before `reads` trained on actions
    for k in ("loss", "data", "history_window", "reads"):
        if saved[k] != getattr(cfg, k):
            raise ConfigError(f"prm: {ckpt} was written with {k}={saved[k]!r}, not "
                              f"{getattr(cfg, k)!r}; delete it or choose another --out")
    log.info("prm: resuming from %s after epoch %d", ckpt, state["epoch"])
    return PRM.load(ckpt / "model", device, cfg.dtype), state


def optimizer_and_scheduler(prm: PRM, cfg: Any, total_steps: int, state: dict | None) -> tuple[Any, Any]:
    """AdamW and the configured schedule for a PRM trainer (`cfg`: lr, weight_decay, scheduler,
    warmup_ratio, out), restored from `out/checkpoint` when resuming (`state` given). Shared by the
    soft-BCE/Bradley–Terry trainer here and the InversePRM trainer."""
    from transformers import get_scheduler

    opt = torch.optim.AdamW(prm.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_scheduler(cfg.scheduler, opt, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                          num_training_steps=total_steps)
    if state is not None:
        ckpt = Path(cfg.out) / "checkpoint"
        opt.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=prm.device, weights_only=True))
        sched.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    return opt, sched


def _run_epoch(acc: Accelerator, model: Any, prm: PRM, cfg: PRMConfig, examples: list[tuple], opt: Any,
               sched: Any, epoch: int) -> dict:
    """One pass in a seeded order (the same order after a resume, and in every process); returns
    epoch metrics. Each step's loss is that of the whole global batch, whatever the process count."""
    from agentprm.progress import progress_bar

    model.train()
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
    starts = range(0, len(order), cfg.batch_size)
    losses, tokens, t0 = [], 0, time.perf_counter()
    name = f"PRM epoch {epoch + 1}/{cfg.epochs}"
    with progress_bar(disable=not (cfg.progress and acc.is_main_process)) as bar:
        task = bar.add_task(name, total=len(starts))
        for s in starts:
            batch = [examples[i] for i in order[s : s + cfg.batch_size]]
            losses.append(_train_step(acc, model, prm, cfg, batch, opt, sched))
            tokens += losses[-1][1]
            bar.update(task, advance=1, description=f"{name} loss {losses[-1][0]:.4f}")
    dt = time.perf_counter() - t0
    return {"epoch": epoch + 1, "prm/train_loss": float(np.mean([x for x, _ in losses])),
            "prm/lr": sched.get_last_lr()[0], "prm/train_tokens_per_s": tokens / dt,
            "prm/train_examples_per_s": len(examples) / dt, "prm/step_losses": [x for x, _ in losses]}


def _train_step(acc: Accelerator, model: Any, prm: PRM, cfg: PRMConfig, batch: list[tuple], opt: Any,
                sched: Any) -> tuple[float, int]:
    """One optimizer step on a global batch: (its loss, its real tokens). This process runs its share,
    weighted as `train.parallel` explains; a process left without a share (a short last batch) runs
    one example at weight 0, because DDP needs every process in every backward pass."""
    mine = my_share(acc, batch)
    weight = loss_weight(_items(mine, cfg.loss), _items(batch, cfg.loss), acc.num_processes)
    with _autocast(prm.device):
        loss, n_tok = _batch_loss(model, prm, mine or batch[:1], cfg.loss)
    acc.backward(loss * weight)
    acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    total_loss, total_tokens = global_sums(acc, loss.item() * weight, n_tok if mine else 0)
    return total_loss / acc.num_processes, int(total_tokens)


def _versions() -> dict[str, str | None]:
    import subprocess

    import transformers

    import agentprm

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        rev = None
    return {"agentprm": agentprm.__version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "git": rev}


def _freeze_unused_lm_head(prm: PRM) -> None:
    """The PRM reads hidden states, never the LM head's logits: an LM head that is not the input
    embedding (untied) would get no gradient, which DDP reports as an error. Freezing it changes
    nothing else (AdamW skips parameters without a gradient)."""
    head, embed = prm.backbone.get_output_embeddings(), prm.backbone.get_input_embeddings()
    if head is not None and head.weight is not embed.weight:
        head.requires_grad_(False)


def train_prm(cfg: PRMConfig) -> dict[str, Any]:
    """Train (or resume) a PRM and write model/, calibration.png and summary.json under cfg.out.
    Under `accelerate launch`/`torchrun` every process runs this; see the module docstring."""
    cfg.validate()
    acc = make_accelerator(cfg.device)
    out = Path(cfg.out)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", {"config": asdict(cfg), "versions": _versions()})
    prm, state = _resume(cfg, device_for(acc, cfg.device))
    training_attention(prm.backbone)  # eager on CUDA: see models.training_attention
    _freeze_unused_lm_head(prm)
    train_rows, train_pairs = _load_split(cfg, "train")
    val_rows, val_pairs = _load_split(cfg, "val")
    examples = _examples(prm, cfg, train_rows, train_pairs)
    data_stats = _data_stats(examples, cfg.max_length, cfg.loss) | {
        "prm/data/train_pairs": len(train_pairs), "prm/data/val_pairs": len(val_pairs)}
    steps_per_epoch = -(-len(examples) // cfg.batch_size)
    opt, sched = optimizer_and_scheduler(prm, cfg, steps_per_epoch * cfg.epochs, state)
    model, opt = acc.prepare(prm, opt)  # DDP wrapper (or prm itself); the schedule counts global steps
    history: list[dict] = state["history"] if state else []
    start = state["epoch"] if state else 0
    if acc.is_main_process:  # once, not once per process under torchrun
        log.info("prm: %d examples, %d steps/epoch, device %s, %d process(es)", len(examples), steps_per_epoch,
                 prm.device, acc.num_processes)
    metrics: dict[str, Any] = {}
    for epoch in range(start, cfg.epochs if examples else start):  # no examples (no pairs): untrained
        epoch_metrics = _run_epoch(acc, model, prm, cfg, examples, opt, sched, epoch)
        if cfg.eval_each_epoch or epoch == cfg.epochs - 1:
            metrics = evaluate(prm, val_rows, val_pairs, cfg.eval_batch_size, acc, cfg.progress)
            epoch_metrics |= {k: v for k, v in metrics.items() if k != "prm/reliability"}
        history.append(epoch_metrics)
        if acc.is_main_process:
            log.info("prm: %s", json.dumps({k: v for k, v in epoch_metrics.items() if k != "prm/step_losses"}))
            _save_checkpoint(out, prm, opt, sched, {"epoch": epoch + 1, "history": history, "config": asdict(cfg)})
        acc.wait_for_everyone()
    if not metrics:  # resumed a finished run: evaluate what was loaded
        metrics = evaluate(prm, val_rows, val_pairs, cfg.eval_batch_size, acc, cfg.progress)
    summary = _finish(cfg, prm, metrics | data_stats, history, start, write=acc.is_main_process)
    acc.wait_for_everyone()
    return summary


def _finish(cfg: PRMConfig, prm: PRM, metrics: dict, history: list[dict], start: int,
            write: bool = True) -> dict[str, Any]:
    """Final model, calibration plot and summary.json (the last validation metrics at top level);
    `write` is False in the processes other than the main one, which only return the summary."""
    out = Path(cfg.out)
    summary = {**metrics, "prm/train_loss": history[-1]["prm/train_loss"] if history else None,
               "prm/resumed_from_epoch": start, "history": history, "config": asdict(cfg), "versions": _versions()}
    if not write:
        return summary
    prm.save(out / "model")
    if metrics.get("prm/reliability"):
        plot_calibration(metrics["prm/reliability"], out / "calibration.png",
                         f"PRM ({cfg.loss}) on {metrics['prm/val_rows']} val rows")
    else:
        log.warning("prm: no validation rows under %s; no metrics or calibration plot", cfg.data)
    write_json(out / "summary.json", summary)
    return summary
