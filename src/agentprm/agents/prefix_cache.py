"""Decoding that reads each episode once: the KV cache of a turn's prompt is kept and found again as
the prefix of the next turn's prompt.

With the "episode" prompt style (`prompts.build_messages`), turn t+1's prompt is turn t's prompt, its
answer, and one more observation. HF `generate` reads the whole prompt again at every turn, so an
episode of T turns costs O(T²) prompt tokens, and on ALFWorld (~600-token prompts, ~7-token answers)
nearly all of the compute goes there. Here every prompt's KV cache is stored (`PrefixCache`), the
next prompt looks up its longest stored prefix (the previous prompt, which ends where the previous
answer begins), and only the new tokens (~40: that answer and the next observation) run through the
model. Decoding is our own short loop over the batched cache: greedy or temperature/top-p sampling,
optionally restricted to a token trie (constrained mode), log-probabilities of the unwarped
temperature-1 model as in `LMPolicy.generate`.

Rows of a batch have caches of different lengths: they are left-padded into one DynamicCache with an
attention mask over the padding, and each row's new tokens get the positions that continue its own
cache, so a row's result does not depend on the others (tested against `generate`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch

from agentprm.agents.seeding import RowSampler

KVs = list[tuple[torch.Tensor, torch.Tensor]]
"""One (key, value) pair per layer, each (heads, length, head_dim): one sequence's cache."""


class PrefixCache:
    """Prompt KV caches by token sequence. A prompt's cached prefix is the longest earlier prompt that
    ends at one of its `boundary` tokens (the assistant marker that ends every prompt)."""

    def __init__(self, boundary: int, keep: int = 256):
        self.boundary, self.keep = boundary, keep
        self.entries: OrderedDict[tuple[int, ...], KVs] = OrderedDict()
        self.hits = self.misses = 0
        self._used: set[tuple[int, ...]] = set()

    def lookup(self, ids: list[int]) -> tuple[int, KVs | None]:
        """(length of the cached prefix, its KVs), or (0, None)."""
        for cut in reversed([i + 1 for i, t in enumerate(ids[:-1]) if t == self.boundary]):
            key = tuple(ids[:cut])
            kv = self.entries.get(key)
            if kv is not None:
                self.hits += 1
                self._used.add(key)
                return cut, kv
        self.misses += 1
        return 0, None

    def drop_used(self) -> None:
        """Forget the prefixes found since the last call: their episodes have moved on, and the new
        prompts are stored instead (memory stays ~one prompt per episode in flight)."""
        for key in self._used:
            self.entries.pop(key, None)
        self._used.clear()

    def store(self, ids: list[int], kv: KVs) -> None:
        self.entries[tuple(ids)] = kv
        self.entries.move_to_end(tuple(ids))
        while len(self.entries) > self.keep:
            self.entries.popitem(last=False)


def _batch_cache(kvs: list[KVs | None], lengths: list[int], n_layers: int, like: torch.Tensor) -> tuple[Any, int]:
    """Left-padded DynamicCache of rows with cached lengths `lengths` (0: nothing cached)."""
    from transformers import DynamicCache

    width = max(lengths)
    cache = DynamicCache()
    if width == 0:
        return cache, 0
    ref = next(kv for kv in kvs if kv is not None)
    for layer in range(n_layers):
        h, _, d = ref[layer][0].shape
        k = like.new_zeros((len(kvs), h, width, d), dtype=ref[layer][0].dtype)
        v = torch.zeros_like(k)
        for b, (kv, n) in enumerate(zip(kvs, lengths, strict=True)):
            if kv is not None and n:
                k[b, :, width - n :] = kv[layer][0]
                v[b, :, width - n :] = kv[layer][1]
        cache.update(k, v, layer)
    return cache, width


def _row_kvs(cache: Any, b: int, spans: tuple[slice, slice]) -> KVs:
    """Row b of a batched cache: its cached part and its new tokens (two spans), copied out together."""
    return [(torch.cat([layer.keys[b][:, sp] for sp in spans], dim=1),
             torch.cat([layer.values[b][:, sp] for sp in spans], dim=1)) for layer in cache.layers]


def read_prompts(model: Any, store: PrefixCache, prompts: list[list[int]], pad_id: int) -> tuple[Any, torch.Tensor]:
    """Run each prompt's new tokens on top of its cached prefix (all of it when none is cached); every
    prompt's KV cache goes into `store`. Returns the model output (the last position's logits, the batched
    left-padded cache) and the attention mask over that cache."""
    device = next(model.parameters()).device
    n_layers = model.config.num_hidden_layers
    found = [store.lookup(p) for p in prompts]
    lengths = [c for c, _ in found]
    news = [p[c:] for p, (c, _) in zip(prompts, found, strict=True)]
    cache, width = _batch_cache([kv for _, kv in found], lengths, n_layers, torch.empty(0, device=device))
    span = max(map(len, news))
    ids = torch.full((len(prompts), span), pad_id, dtype=torch.long, device=device)
    mask = torch.zeros((len(prompts), width + span), dtype=torch.long, device=device)
    pos = torch.zeros((len(prompts), span), dtype=torch.long, device=device)
    for b, (new, cached) in enumerate(zip(news, lengths, strict=True)):
        ids[b, span - len(new) :] = torch.tensor(new, device=device)
        mask[b, width - cached : width] = 1
        mask[b, width + span - len(new) :] = 1
        pos[b, span - len(new) :] = torch.arange(cached, cached + len(new), device=device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                logits_to_keep=1)
    cache = out.past_key_values
    store.drop_used()
    for b, (p, new, cached) in enumerate(zip(prompts, news, lengths, strict=True)):
        store.store(p, _row_kvs(cache, b, (slice(width - cached, width), slice(width + span - len(new), None))))
    return out, mask


@torch.no_grad()
def cached_answers_logprobs(
    model: Any, store: PrefixCache, prompts: list[list[int]], answers: list[list[list[int]]], pad_id: int
) -> torch.Tensor:
    """Sum of log p(answer tokens | prompt) for answers[g][j] after prompts[g], flattened in (g, j) order:
    score mode's `answers_logprobs`, reading only what each prompt adds to its cached prefix. The cache
    rows are repeated per answer and the right-padded answers run on top, positions continuing each
    prompt's own."""
    out, mask = read_prompts(model, store, prompts, pad_id)
    device = mask.device
    owner = torch.tensor([g for g, group in enumerate(answers) for _ in group], device=device)
    cache = out.past_key_values
    cache.batch_select_indices(owner)
    flat = [torch.tensor(a, device=device) for group in answers for a in group]
    a_ids = torch.nn.utils.rnn.pad_sequence(flat, batch_first=True, padding_value=pad_id)
    a_mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(a) for a in flat], batch_first=True)
    start = torch.tensor([len(p) for p in prompts], device=device)[owner]
    second = model(input_ids=a_ids, attention_mask=torch.cat([mask[owner], a_mask], dim=1),
                   position_ids=start[:, None] + torch.arange(a_ids.shape[1], device=device)[None, :],
                   past_key_values=cache, use_cache=True)
    return answer_logprob_sums(out.logits[owner, -1], second.logits, a_ids, a_mask)


def answer_logprob_sums(
    last: torch.Tensor, answer_logits: torch.Tensor, a_ids: torch.Tensor, a_mask: torch.Tensor
) -> torch.Tensor:
    """Sum over each answer's tokens of log p(token): the first token is predicted by the prompt's last
    position (`last`, (C, V)), the others by the answer's own positions (`answer_logits`, (C, k, V))."""
    logits = torch.cat([last[:, None], answer_logits[:, :-1]], dim=1).float()
    tok = logits.log_softmax(-1).gather(-1, a_ids[:, :, None]).squeeze(-1)
    return (tok * a_mask).sum(-1)


@torch.no_grad()
def cached_generate(
    model: Any, store: PrefixCache, prompts: list[list[int]], n: int, max_new_tokens: int, stop_ids: list[int],
    pad_id: int, temperature: float = 0.0, top_p: float = 1.0, tries: list[dict] | None = None,
    sampler: RowSampler | None = None,
) -> list[tuple[list[int], list[float]]]:
    """n continuations of each prompt (grouped by prompt): (token ids incl. the stop token if reached,
    log p of each under the temperature-1 model). Every prompt's KV cache goes into `store`. Sampling
    (temperature > 0) draws row b's tokens from `sampler`'s stream b (see agents.seeding)."""
    device = next(model.parameters()).device
    out, mask = read_prompts(model, store, prompts, pad_id)
    cache = out.past_key_values
    logits = out.logits[:, -1].float()
    if n > 1:
        cache.batch_repeat_interleave(n)
        mask, logits = mask.repeat_interleave(n, 0), logits.repeat_interleave(n, 0)
    rows = len(prompts) * n
    if temperature > 0 and sampler is None:
        sampler = RowSampler(range(rows), device)
    next_pos = torch.tensor([len(p) for p in prompts for _ in range(n)], device=device)
    nodes = [tries[b // n] for b in range(rows)] if tries is not None else None
    stop = torch.tensor(stop_ids, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    tokens: list[list[int]] = [[] for _ in range(rows)]
    lps: list[list[float]] = [[] for _ in range(rows)]
    for _ in range(max_new_tokens):
        logp = logits.log_softmax(-1)
        if nodes is not None:
            allowed = torch.full_like(logits, float("-inf"))
            for b, node in enumerate(nodes):
                allowed[b, list(node) if node else stop_ids[:1]] = 0.0
            logits = logits + allowed
        tok = sampler.choose(logits, temperature, top_p) if sampler is not None else logits.argmax(-1)
        for b in (~done).nonzero().flatten().tolist():
            t = int(tok[b])
            tokens[b].append(t)
            lps[b].append(float(logp[b, t]))
            if nodes is not None:
                nodes[b] = nodes[b].get(t, {}) if nodes[b] else {}
        done |= torch.isin(tok, stop)
        if bool(done.all()):
            break
        tok = torch.where(done, torch.full_like(tok, pad_id), tok)
        mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
        out = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                    past_key_values=cache, use_cache=True)
        cache, logits, next_pos = out.past_key_values, out.logits[:, -1].float(), next_pos + 1
    return list(zip(tokens, lps, strict=True))
