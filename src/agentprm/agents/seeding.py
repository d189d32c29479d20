"""Sampling that depends on *which* answer is drawn, not on when or beside what.

A rollout samples many episodes in shared batches, and which episodes share a batch depends on how
fast env workers answer; one random stream per call would then make every draw depend on the batch
it landed in and on how many calls came before. A run resumed after a crash, or rerun with other
workers, would then sample other actions: not the run it would have been. Here each answer row has
its own stream, seeded from (base seed, episode id, turn, sample index), and tokens are drawn with the
Gumbel-max trick (argmax of logits/T + Gumbel noise is a draw from softmax(logits/T)), which needs
only that row's noise. So a row's draws are the same in any batch, in any order, after any resume.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor


def row_seed(seed: int, key: str) -> int:
    """A 63-bit seed from the base seed and a row's key (stable across processes and Python runs,
    unlike `hash`)."""
    digest = hashlib.blake2b(f"{seed}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def top_p_mask(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Logits with the tokens outside the top-p nucleus set to -inf (the most likely token always stays)."""
    if top_p >= 1.0:
        return logits
    probs = logits.softmax(-1)
    sorted_p, idx = probs.sort(-1, descending=True)
    drop = sorted_p.cumsum(-1) - sorted_p > top_p
    return logits.masked_fill(torch.zeros_like(drop).scatter(-1, idx, drop), float("-inf"))


class RowSampler:
    """One random stream per row of a batch; `choose` draws each row's next token from its own stream.
    Every row draws one noise vector per decoding step, finished or not, so a row's t-th token always
    uses its t-th draw."""

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.gens = [torch.Generator(device=device).manual_seed(s) for s in seeds]
        self.device = torch.device(device)

    @classmethod
    def for_keys(cls, seed: int, keys: Sequence[str], device: torch.device | str = "cpu") -> RowSampler:
        return cls([row_seed(seed, k) for k in keys], device)

    def gumbel(self, vocab: int) -> torch.Tensor:
        """(rows, vocab) standard Gumbel noise, row b from stream b."""
        u = torch.stack([torch.rand(vocab, generator=g, device=self.device) for g in self.gens])
        return -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))

    def warp(self, logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
        """Scores whose argmax is a draw from softmax(logits / temperature) within the top-p nucleus."""
        scores = top_p_mask(logits.float() / temperature, top_p)
        return scores + self.gumbel(scores.shape[-1]).to(scores.device)

    def choose(self, logits: torch.Tensor, temperature: float, top_p: float = 1.0) -> torch.Tensor:
        """Next token per row from (rows, vocab) logits (already masked to the allowed tokens); greedy at
        temperature 0."""
        if temperature == 0:
            return logits.argmax(-1)
        return self.warp(logits, temperature, top_p).argmax(-1)


class SeededSampling(LogitsProcessor):
    """A `transformers` logits processor that turns greedy `generate` into per-row seeded sampling
    (pass `do_sample=False`): it warps the scores with `RowSampler.warp`, so the greedy pick is the draw."""

    def __init__(self, sampler: RowSampler, temperature: float, top_p: float):
        self.sampler, self.temperature, self.top_p = sampler, temperature, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return self.sampler.warp(scores, self.temperature, self.top_p).to(scores.dtype)
