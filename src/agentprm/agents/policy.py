"""The LM policy: one causal LM serves every episode in flight, by generating or by scoring.

Two ways to act, picked by `PolicyConfig.mode`:
- "generate": the model writes `REASON: ... ACTION: ...` for all contexts in one batched, left-padded
  `generate` call; `parse_answer` maps the text to an admissible command.
- "constrained": the same generation, with every token restricted to continuations of the admissible
  commands' answers `format_answer(a)` + end-of-turn (a token trie per context, HF's
  `prefix_allowed_tokens_fn`): greedy or sampled decoding that can only say valid commands, at the
  cost of generating. Log-probabilities stay those of the unconstrained model.
- "score": the model never writes; each admissible action's answer text `format_answer(action)` is
  scored by its log-likelihood, and the argmax is taken (temperature 0) or an action is drawn from the
  softmax of those log-likelihoods over the admissible actions: a constrained policy, every action
  valid. With each prompt read once (a shared KV cache), scoring ~30 candidates of ~7 tokens costs
  about as much as generating one answer.

What counts as "the answer" is defined once, in `encode_pair`: the answer text's tokens followed by
the end-of-turn token, tokenized separately from the prompt (exactly what the model emits after the
generation prompt). SFT trains on those tokens, score mode and DPO score them, and a generated
answer's `logprob` covers the same tokens (including the end-of-turn token when the model stopped).
All log-probabilities are under the model's own distribution (temperature-1, unwarped logits),
whatever temperature/top-p were used to sample, so they can be compared across samplers and fed to
DPO/importance weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from agentprm.agents.base import AgentOutput
from agentprm.agents.prefix_cache import PrefixCache, answer_logprob_sums, cached_answers_logprobs, cached_generate
from agentprm.agents.seeding import RowSampler, SeededSampling, row_seed
from agentprm.errors import ConfigError
from agentprm.models import cpu_bf16_if_native, resolve_model
from agentprm.prompts import TurnContext, build_messages, format_answer, parse_answer, prompt_style

DEFAULT_HISTORY_WINDOW = 8
"""Turns of history in a prompt (policy and SFT share it): ALFWorld episodes run to 50 steps, and the
last 8 turns keep SmolLM2 prompts under ~1k tokens while covering a typical sub-goal."""

END_OF_TURN = "<|im_end|>"
STATIC_PAD_MULTIPLE = 64
"""With a static cache, prompts are left-padded to a multiple of this, so the compiled decode step
sees few distinct cache lengths (each new shape costs a recompile)."""


MODES = ("generate", "constrained", "score")


@dataclass
class PolicyConfig:
    mode: str = "generate"
    """"generate" (write an answer, parse it), "constrained" (write one of the admissible commands) or
    "score" (rank admissible actions by likelihood)."""
    temperature: float = 1.0
    """Sampling temperature; 0 is greedy. 1.0 samples the model itself (what on-policy RL wants)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0: off). Ignored when greedy."""
    max_new_tokens: int = 48
    """Answer budget; `REASON: <sentence> ACTION: <command>` fits in ~40 SmolLM2 tokens."""
    history_window: int | None = DEFAULT_HISTORY_WINDOW
    """Previous turns shown in the prompt (None: all). Must match what the model was trained with."""
    explore: bool = False
    """Add the steered-exploration hint to the system prompt (for sampling rollouts only)."""
    seed: int = 0
    """Base seed of every sampling stream (agents.seeding): in a rollout a draw depends on the seed,
    the episode and the turn only, so a resumed or re-batched run replays exactly."""
    batch_size: int = 32
    """Most sequences in one forward/generate (contexts × samples, or candidates in score mode)."""
    device: str | None = None
    """Where `from_spec` puts the model (None: CUDA if available, else CPU)."""
    dtype: str | None = None
    """Model dtype for `from_spec` (None: bf16 on CUDA, fp32 on CPU)."""
    prefix_cache: bool = True
    """With "episode" prompts, keep each prompt's KV cache and read only the new tokens next turn
    (`agents.prefix_cache`); off for a model that changes between calls (the DPO sampler)."""
    cpu_bf16: bool = False
    """Act under bf16 autocast on the CPU (~1.6× faster where the CPU has AVX512-BF16 or AMX; log-probs
    lose some precision). Ignored, with a warning, on CPUs without them (`models.cpu_bf16_if_native`),
    where it is many times slower. Weights stay as loaded; CUDA models are bf16 already."""
    static_cache: bool | None = None
    """Generate with a static KV cache (compiled decode). None: on for CUDA, off for CPU, where
    compilation costs more than it saves."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"policy mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"need temperature >= 0 and 0 < top_p <= 1 (got {self.temperature}, {self.top_p})")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("max_new_tokens and batch_size must be positive")


@dataclass
class Generation:
    """One generated answer, token-exact (text alone may not re-tokenize to the same ids)."""

    text: str
    """Decoded answer without the end-of-turn token."""
    token_ids: list[int] = field(default_factory=list)
    """Generated ids, including the end-of-turn token when `finished`."""
    logprob: float = 0.0
    """Sum of log p(token) over `token_ids` at temperature 1."""
    finished: bool = False
    """True when the model emitted end-of-turn within the budget (False: cut off)."""


def end_of_turn_id(tokenizer: Any) -> int:
    """The token closing an assistant turn: ChatML's <|im_end|> when the vocabulary has it, else eos."""
    tid = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid >= 0:
        return tid
    return tokenizer.eos_token_id


def stop_ids(tokenizer: Any) -> list[int]:
    return sorted({end_of_turn_id(tokenizer), tokenizer.eos_token_id} - {None})


def prompt_text(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def encode_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    return tokenizer(prompt_text(tokenizer, messages), add_special_tokens=False)["input_ids"]


def encode_answer(tokenizer: Any, answer: str, end_of_turn: bool = True) -> list[int]:
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return [*ids, end_of_turn_id(tokenizer)] if end_of_turn else ids


def encode_pair(
    tokenizer: Any, messages: list[dict[str, str]], answer: str, end_of_turn: bool = True
) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) — the one definition of an answer's tokens (see module docstring):
    tokenized apart, as the model emits the answer after the generation prompt."""
    return encode_prompt(tokenizer, messages), encode_answer(tokenizer, answer, end_of_turn)


def _left_pad(seqs: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def _chunk_logprobs(model: Any, prompts: list[list[int]], answers: list[list[int]], pad_id: int) -> torch.Tensor:
    """Left-padded so every answer ends at the last position: only the last (max answer + 1) logits
    are computed (`logits_to_keep`), not (B, T, V) for a whole prompt."""
    device = next(model.parameters()).device  # `model` may be a DDP wrapper (no .device)
    ids, mask = _left_pad([p + a for p, a in zip(prompts, answers, strict=True)], pad_id, device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    k = max(map(len, answers))
    logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=k + 1).logits
    logp = logits[:, :-1].float().log_softmax(-1)  # (B, k, V): predicts the last k tokens
    tok = logp.gather(-1, ids[:, -k:, None]).squeeze(-1)  # (B, k)
    lens = torch.tensor([len(a) for a in answers], device=ids.device)
    is_answer = torch.arange(k, device=ids.device)[None, :] >= (k - lens)[:, None]
    return (tok * is_answer).sum(-1)


def _right_pad(seqs: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def run_after_prompts(
    model: Any, prompts: list[list[int]], answers: list[list[list[int]]], pad_id: int
) -> tuple[Any, Any, torch.Tensor, torch.Tensor]:
    """Run answers[g][j] after prompts[g], reading each prompt once: the prompts (left-padded) go
    through `model` with a KV cache, the cache rows are repeated per answer, and the right-padded
    answers run on top, positions continuing each prompt's own. Returns (prompt output, answer
    output, owner (C,), answer mask (C, k)) with answers flattened in (g, j) order. `model` is a
    causal LM (outputs carry logits) or its base model (hidden states): the policy's score mode and
    the PRM's candidate scoring both use it. Prompts are ~50× longer than answers on ALFWorld, so
    this is ~N× cheaper than N copies of prompt + answer."""
    device = next(model.parameters()).device
    p_ids, p_mask = _left_pad(prompts, pad_id, device)
    lm = hasattr(getattr(model, "module", model), "lm_head")  # a causal LM, perhaps inside a DDP wrapper
    kwargs = {"logits_to_keep": 1} if lm else {}
    first = model(input_ids=p_ids, attention_mask=p_mask, position_ids=(p_mask.cumsum(-1) - 1).clamp(min=0),
                  use_cache=True, **kwargs)
    owner = torch.tensor([g for g, group in enumerate(answers) for _ in group], device=device)
    cache = first.past_key_values
    cache.batch_select_indices(owner)
    a_ids, a_mask = _right_pad([a for group in answers for a in group], pad_id, device)
    start = p_mask.sum(-1)[owner]  # (C,) each prompt's length = its first answer position
    second = model(input_ids=a_ids, attention_mask=torch.cat([p_mask[owner], a_mask], dim=1),
                   position_ids=start[:, None] + torch.arange(a_ids.shape[1], device=device)[None, :],
                   past_key_values=cache, use_cache=True)
    return first, second, owner, a_mask


def answers_logprobs(model: Any, prompts: list[list[int]], answers: list[list[list[int]]], pad_id: int) -> torch.Tensor:
    """Sum of log p(answer tokens | prompt) for answers[g][j] after prompts[g], flattened; each
    prompt read once (`run_after_prompts`). Same values as `sequence_logprobs` on the pairs."""
    first, second, owner, a_mask = run_after_prompts(model, prompts, answers, pad_id)
    a_ids = torch.nn.utils.rnn.pad_sequence(
        [torch.tensor(a) for group in answers for a in group], batch_first=True, padding_value=pad_id
    ).to(a_mask.device)
    return answer_logprob_sums(first.logits[owner, -1], second.logits, a_ids, a_mask)


def sequence_logprobs(
    model: Any,
    prompt_ids: Sequence[list[int]],
    answer_ids: Sequence[list[int]],
    pad_id: int,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Teacher-forced sum of log p(answer token | prompt, earlier answer tokens) per pair, shape (N,).

    Pairs are sorted by length before chunking (less padding) and returned in input order. Gradients
    flow when called outside `no_grad` (DPO)."""
    n = len(prompt_ids)
    if n == 0:
        return torch.zeros(0, device=next(model.parameters()).device)
    order = sorted(range(n), key=lambda i: -(len(prompt_ids[i]) + len(answer_ids[i])))
    step = batch_size or n
    parts = [
        _chunk_logprobs(model, [prompt_ids[i] for i in idx], [answer_ids[i] for i in idx], pad_id)
        for idx in (order[s : s + step] for s in range(0, n, step))
    ]
    inverse = torch.empty(n, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(n)
    return torch.cat(parts)[inverse.to(parts[0].device)]


def answer_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: list[list[dict[str, str]]],
    answers: list[str],
    end_of_turn: bool = True,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Sum of the answer tokens' log-probabilities for (prompt messages, answer text) pairs, shape (N,).

    `end_of_turn` includes the closing token, so "go to desk 1" is not credited for "go to desk 10".
    Text is re-tokenized: for a generated answer this equals its `logprob` when the generated ids are
    the canonical tokenization of its text and it `finished` (a cut-off answer has no end-of-turn)."""
    pairs = [encode_pair(tokenizer, m, a, end_of_turn) for m, a in zip(prompts, answers, strict=True)]
    return sequence_logprobs(
        model, [p for p, _ in pairs], [a for _, a in pairs], tokenizer.pad_token_id, batch_size
    )


def _trie(seqs: list[list[int]]) -> dict:
    """Token trie of allowed continuations: {token: subtrie}; a finished sequence is an empty dict."""
    root: dict = {}
    for seq in seqs:
        node = root
        for tok in seq:
            node = node.setdefault(tok, {})
    return root


class LMPolicy:
    """A causal LM as an `Agent`. See the module docstring for the two modes."""

    def __init__(self, model: Any, tokenizer: Any, config: PolicyConfig | None = None, name: str = "lm"):
        self.model = model  # left in its train/eval mode: DPO samples from the model it trains
        self.tokenizer = tokenizer
        self.config = config or PolicyConfig()
        self.name = name
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.stop_ids = stop_ids(tokenizer)
        self.prompt_style = prompt_style(model)
        self._calls = 0
        self._scored: list[Any] = [None]  # score mode's last (owner, key, log-probs), shared with greedy twins
        self._cpu_bf16 = self.device.type == "cpu" and cpu_bf16_if_native(self.config.cpu_bf16)  # decided once
        self._store: PrefixCache | None = None
        if self.prompt_style == "episode" and self.config.prefix_cache:
            probe = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], add_generation_prompt=True,
                                                  tokenize=False)
            self._store = PrefixCache(tokenizer(probe, add_special_tokens=False)["input_ids"][-1])

    @classmethod
    def from_spec(cls, spec: str, config: PolicyConfig | None = None) -> LMPolicy:
        config = config or PolicyConfig()
        model, tokenizer = resolve_model(spec, config.device, config.dtype)
        path = Path(spec)  # our runs save to <run>/model: name the policy after the run
        name = spec if spec in ("tiny", "smollm2") else path.parent.name if path.name == "model" else path.name
        return cls(model, tokenizer, config, name)

    @property
    def policy_id(self) -> str:
        return f"{self.name}:score" if self.config.mode == "score" else self.name

    def greedy(self) -> LMPolicy:
        """The same model acting greedily (temperature 0), e.g. to play a look-ahead's branches."""
        twin = LMPolicy(self.model, self.tokenizer, replace(self.config, temperature=0.0), self.name)
        twin._scored = self._scored  # Best-of-N asks both for the same turns: score mode reads them once
        return twin

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def static_cache(self) -> bool:
        sc = self.config.static_cache
        return self.device.type == "cuda" if sc is None else sc

    def messages(self, ctx: TurnContext) -> list[dict[str, str]]:
        return build_messages(ctx, self.config.history_window, self.config.explore, self.prompt_style)

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]:
        return [outs[0] for outs in self.sample(contexts, 1)]

    def sample(self, contexts: list[TurnContext], n: int, first_index: int = 0) -> list[list[AgentOutput]]:
        """n answers per context, all in one batched pass (chunked by batch_size): generated, or in
        score mode drawn among the admissible actions; with temperature 0 the n answers are identical.
        `first_index`: where contexts[0] sits in a batch split across processes (the policy step under
        DDP), so contexts without an episode key draw what they would in the whole batch."""
        if self.config.mode == "score":
            return self.score(contexts, n)
        prompts = [prompt_text(self.tokenizer, self.messages(c)) for c in contexts]
        allowed = None
        if self.config.mode == "constrained":
            allowed = [[encode_answer(self.tokenizer, format_answer(a)) for a in c.admissible_actions or ["look"]]
                       for c in contexts]
        gens = self.generate(prompts, num_samples=n, allowed=allowed, keys=self._keys(contexts),
                             first_index=first_index)
        return [
            [self._to_output(g, ctx) for g in gens[i * n : (i + 1) * n]] for i, ctx in enumerate(contexts)
        ]

    @staticmethod
    def _keys(contexts: list[TurnContext]) -> list[str] | None:
        """Sampling keys (agents.seeding): episode and turn, when every context names its episode."""
        if not all(c.episode_key for c in contexts):
            return None
        return [f"{c.episode_key}|{len(c.history)}" for c in contexts]

    @staticmethod
    def _to_output(gen: Generation, ctx: TurnContext) -> AgentOutput:
        parsed = parse_answer(gen.text, ctx.admissible_actions)
        return AgentOutput(parsed.action, gen.text, parsed.reason, gen.logprob, parsed.matched)

    @torch.no_grad()
    def generate(
        self, prompts: list[str], min_new_tokens: int = 0, num_samples: int = 1,
        allowed: list[list[list[int]]] | None = None, keys: list[str] | None = None, first_index: int = 0,
    ) -> list[Generation]:
        """Continue each chat-templated prompt `num_samples` times (answers of prompt i at
        i*num_samples ...). Sorted by length and chunked by batch_size sequences (less padding).
        Sampling: answer j of prompt i draws from its own stream, seeded by `keys[i]` and j (rollouts
        key by episode and turn, so a draw is the same in any batch and after a resume; without keys,
        by this call's number and first_index + i). `min_new_tokens` forces length (benchmarks).
        `allowed[i]`: the only token sequences prompt i may be continued with (constrained decoding)."""
        self._calls += 1
        n = num_samples
        keys = keys or [f"call{self._calls}|{first_index + i}" for i in range(len(prompts))]
        ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[Generation | None] = [None] * (len(ids) * n)
        per_chunk = max(1, self.config.batch_size // n)
        cached = self._store is not None and not min_new_tokens and not self.static_cache
        with self._autocast():
            for s in range(0, len(order), per_chunk):
                idx = order[s : s + per_chunk]
                tries = [_trie(allowed[i]) for i in idx] if allowed is not None else None
                sampler = None  # greedy decoding draws nothing: no streams to seed
                if self.config.temperature > 0:
                    sampler = RowSampler.for_keys(self.config.seed, [f"{keys[i]}|{j}" for i in idx for j in range(n)],
                                                  self.device)
                if cached:
                    c = self.config
                    rows = cached_generate(self.model, self._store, [ids[i] for i in idx], n, c.max_new_tokens,
                                           self.stop_ids, self.tokenizer.pad_token_id, c.temperature, c.top_p,
                                           tries, sampler)
                    gens = [self._finish(row, lps) for row, lps in rows]
                else:
                    gens = self._generate_chunk([ids[i] for i in idx], min_new_tokens, n, tries, sampler)
                for k, i in enumerate(idx):
                    out[i * n : (i + 1) * n] = gens[k * n : (k + 1) * n]
        return out  # type: ignore[return-value]

    def _autocast(self) -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._cpu_bf16)

    def generation_kwargs(self, min_new_tokens: int = 0, sampler: RowSampler | None = None) -> dict[str, Any]:
        """`generate` arguments. Sampling is greedy decoding over seeded, warped scores (SeededSampling),
        so HF's own sampler and its global random state are never used."""
        c = self.config
        kw: dict[str, Any] = dict(
            max_new_tokens=c.max_new_tokens,
            min_new_tokens=min_new_tokens or None,
            do_sample=False,
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,  # raw logits → temperature-1 logprobs, whatever we sample with
        )
        if sampler is not None:  # given exactly when sampling (temperature > 0)
            from transformers import LogitsProcessorList

            kw["logits_processor"] = LogitsProcessorList([SeededSampling(sampler, c.temperature, c.top_p)])
        if self.static_cache:
            kw["cache_implementation"] = "static"
        return kw

    def _generate_chunk(
        self, ids: list[list[int]], min_new_tokens: int, n: int = 1, tries: list[dict] | None = None,
        sampler: RowSampler | None = None,
    ) -> list[Generation]:
        """n answers per prompt (grouped by prompt). With n > 1 the prompts are read once: their KV
        cache (all but the last token) is computed once, then repeated n times for sampling, instead
        of n copies of each prompt going through the model (prompts are ~50x longer than answers)."""
        batch = self.tokenizer.pad(
            {"input_ids": ids},
            padding=True,
            padding_side="left",
            pad_to_multiple_of=STATIC_PAD_MULTIPLE if self.static_cache else None,
            return_tensors="pt",
        ).to(self.device)
        kwargs = self.generation_kwargs(min_new_tokens, sampler)
        if n > 1 and not self.static_cache and batch["input_ids"].shape[1] > 1:
            kwargs["past_key_values"] = self._prompt_cache(batch, n)
            batch = {k: v.repeat_interleave(n, dim=0) for k, v in batch.items()}
        elif n > 1:
            batch = {k: v.repeat_interleave(n, dim=0) for k, v in batch.items()}
        if tries is not None:
            kwargs["prefix_allowed_tokens_fn"] = self._trie_walker(tries, n, batch["input_ids"].shape[1])
        res = self.model.generate(**batch, **kwargs)
        new = res.sequences[:, batch["input_ids"].shape[1] :]  # (B, N)
        tok_lp = torch.stack(
            [step.float().log_softmax(-1).gather(-1, new[:, t, None]).squeeze(-1) for t, step in enumerate(res.logits)],
            dim=1,
        )  # (B, N)
        return [self._finish(row, lp) for row, lp in zip(new.tolist(), tok_lp.tolist(), strict=True)]

    def _trie_walker(self, tries: list[dict], n: int, width: int) -> Any:
        """prefix_allowed_tokens_fn: row b continues prompt b // n; its tokens after `width` walk the trie."""
        stop = end_of_turn_id(self.tokenizer)

        def allowed(b: int, input_ids: torch.Tensor) -> list[int]:
            node = tries[b // n]
            for tok in input_ids[width:].tolist():
                node = node.get(tok)
                if node is None:
                    return [stop]
            return list(node) or [stop]

        return allowed

    def _prompt_cache(self, batch: dict[str, torch.Tensor], n: int) -> Any:
        """KV cache of every prompt but its last token, each row repeated n times; `generate` then
        feeds the last prompt token itself and continues (positions from the attention mask, as it
        computes them)."""
        ids, mask = batch["input_ids"][:, :-1], batch["attention_mask"][:, :-1]
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                         use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        return cache

    def _finish(self, row: list[int], lps: list[float]) -> Generation:
        stop = next((t for t, tok in enumerate(row) if tok in self.stop_ids), None)
        keep = row if stop is None else row[: stop + 1]
        text = self.tokenizer.decode(keep if stop is None else keep[:-1], skip_special_tokens=True)
        return Generation(text, keep, float(sum(lps[: len(keep)])), stop is not None)

    @torch.no_grad()
    def score(self, contexts: list[TurnContext], n: int = 1) -> list[list[AgentOutput]]:
        """Score mode: every admissible action's answer `format_answer(a)` + end-of-turn is scored by
        log p(answer | prompt) (each prompt read once, `answers_logprobs`; with the prefix cache only its
        new tokens, `cached_answers_logprobs`); at temperature 0 the argmax
        is taken, else n actions are drawn from softmax(log p / temperature) over the admissible ones:
        a policy that can only say valid commands.

        A greedy twin (`greedy()`) and its sampler asked in turn for the same turns (Best-of-N with the
        greedy answer among its candidates) read them once: the log-probs one of them computed are used
        once by the other. Never by the one that computed them, whose weights may have changed since (DPO)."""
        prompts = [encode_prompt(self.tokenizer, self.messages(c)) for c in contexts]
        answers = [[encode_answer(self.tokenizer, format_answer(a)) for a in c.admissible_actions] or
                   [encode_answer(self.tokenizer, format_answer("look"))] for c in contexts]
        key = (tuple(map(tuple, prompts)), tuple(tuple(map(tuple, group)) for group in answers))
        memo, self._scored[0] = self._scored[0], None
        if memo is not None and memo[0] is not self and memo[1] == key:
            lps = memo[2]
        else:
            lps = []
            chunk = max(1, self.config.batch_size // 8)
            for s in range(0, len(contexts), chunk):
                args = (prompts[s : s + chunk], answers[s : s + chunk], self.tokenizer.pad_token_id)
                with self._autocast():
                    if self._store is not None:  # read only what each prompt adds to the episode's last one
                        flat = cached_answers_logprobs(self.model, self._store, *args).tolist()
                    else:
                        flat = answers_logprobs(self.model, *args).tolist()
                for group in answers[s : s + chunk]:
                    lps.append(flat[: len(group)])
                    flat = flat[len(group) :]
            self._scored[0] = (self, key, lps)
        return [self._pick(ctx, lp, n) for ctx, lp in zip(contexts, lps, strict=True)]

    def _pick(self, ctx: TurnContext, lps: list[float], n: int) -> list[AgentOutput]:
        actions = ctx.admissible_actions or ["look"]
        if self.config.temperature == 0:
            picks = [max(range(len(lps)), key=lps.__getitem__)] * n
        else:
            self._calls += 1
            key = f"{ctx.episode_key}|{len(ctx.history)}" if ctx.episode_key else f"call{self._calls}"
            g = torch.Generator().manual_seed(row_seed(self.config.seed, f"score|{key}"))
            probs = torch.tensor(lps).div(self.config.temperature).softmax(-1)
            picks = torch.multinomial(probs, n, replacement=True, generator=g).tolist()
        return [AgentOutput(actions[k], format_answer(actions[k]), None, lps[k], bool(ctx.admissible_actions))
                for k in picks]

