"""Model throughput: batched generation vs one context at a time, and SFT training tokens/s.

Rollouts serve every episode in flight with one `generate` call, so the number that matters is how
much batching buys over one context at a time. Every sequence is forced to `new_tokens` tokens
(end-of-turn suppressed), so all batch sizes do the same work and tokens/s compare directly.
Figures are warm: each batch size gets one untimed call first (allocator, kernel selection and, with
a static cache on CUDA, compilation). Contexts look like ALFWorld turns of varied history length,
so left padding costs what it costs in a rollout.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

from agentprm.agents.policy import DEFAULT_HISTORY_WINDOW, LMPolicy, PolicyConfig, prompt_text
from agentprm.models import load_causal_lm, load_tokenizer
from agentprm.prompts import Turn, TurnContext, build_messages, prompt_style

_PLACES = ["cabinet 1", "countertop 2", "drawer 3", "fridge 1", "microwave 1", "shelf 2", "sinkbasin 1"]


def synthetic_contexts(n: int) -> list[TurnContext]:
    """n ALFWorld-like turns; context i has i % 8 turns of history (prompts of varied length)."""
    room = "You are in the middle of a room. Looking quickly around you, you see " + ", ".join(
        f"a {p}" for p in _PLACES
    )
    actions = ["look", "inventory", *(f"go to {p}" for p in _PLACES), "take mug 1 from countertop 2"]
    return [
        TurnContext(
            task="put a clean mug in coffeemachine.",
            observation=f"You arrive at {_PLACES[i % len(_PLACES)]}. On it, you see a mug 1 and a knife {i}.",
            admissible_actions=actions,
            history=[Turn(room if t == 0 else f"You arrive at {_PLACES[t % 7]}.", f"go to {_PLACES[t % 7]}")
                     for t in range(i % 8)],
        )
        for i in range(n)
    ]


def _time_generate(policy: LMPolicy, prompts: list[str], batch_size: int, new_tokens: int, repeats: int) -> float:
    """Best-of-`repeats` seconds to generate for all prompts in chunks of batch_size (after a warm-up)."""
    policy.config.batch_size = batch_size
    policy.generate(prompts[:batch_size], min_new_tokens=new_tokens)  # warm-up, not timed
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        policy.generate(prompts, min_new_tokens=new_tokens)  # returns lists: device is synced
        times.append(time.perf_counter() - start)
    return min(times)


def bench_generation(
    policy: LMPolicy, contexts: int, batch_sizes: Sequence[int], new_tokens: int, repeats: int = 1
) -> dict[str, Any]:
    """Generated tokens/s for `contexts` prompts at each batch size, and speed-ups over the first."""
    prompts = [prompt_text(policy.tokenizer, policy.messages(c)) for c in synthetic_contexts(contexts)]
    results = []
    for bs in batch_sizes:
        wall = _time_generate(policy, prompts, bs, new_tokens, repeats)
        results.append({"batch_size": bs, "tokens_per_s": contexts * new_tokens / wall, "wall_s": wall})
    base = results[0]["tokens_per_s"]
    lengths = [len(policy.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    return {
        "contexts": contexts,
        "new_tokens": new_tokens,
        "prompt_tokens_mean": sum(lengths) / len(lengths),
        "results": results,
        "speedup": {r["batch_size"]: r["tokens_per_s"] / base for r in results},
    }


def bench_sft(spec: str, device: str | None, batch_size: int = 4, steps: int = 3) -> dict[str, Any]:
    """Seconds per optimizer step and tokens/s of SFT (answer-only loss, AdamW; bf16 autocast on CUDA
    as in `train_sft`) on synthetic turns; one untimed step first."""
    from transformers import DataCollatorForSeq2Seq

    from agentprm.train.sft import answer_only_loss, tokenize_example

    tok = load_tokenizer(spec)
    tok.padding_side = "left"
    model = load_causal_lm(spec, device, "fp32").train()
    exs = [
        {"prompt_messages": build_messages(c, DEFAULT_HISTORY_WINDOW, style=prompt_style(model)),
         "answer": "ACTION: take mug 1 from countertop 2"}
        for c in synthetic_contexts(batch_size)
    ]
    batch = DataCollatorForSeq2Seq(tok)([tokenize_example(tok, e) for e in exs]).to(model.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=model.device.type == "cuda")
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with autocast:
            loss, _ = answer_only_loss(model, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # sync the device before reading the clock
        times.append(time.perf_counter() - start)
    step_s = sum(times[1:]) / steps
    tokens = int(batch["attention_mask"].sum())
    return {"batch_size": batch_size, "step_s": step_s, "tokens_per_step": tokens, "tokens_per_s": tokens / step_s}


def bench_generate(
    spec: str = "tiny",
    batch_sizes: Sequence[int] = (1, 8),
    new_tokens: int = 32,
    device: str | None = None,
    sft_batch_size: int = 4,
    sft_steps: int = 3,
    repeats: int = 1,
    static_cache: bool | None = None,
) -> dict[str, Any]:
    """Generation tokens/s for max(batch_sizes) contexts at each batch size (speed-up over the first
    size, normally 1) and SFT step time/tokens/s. `static_cache`: see `PolicyConfig` (None: on for
    CUDA). `sft_steps=0`: no SFT timing ("sft" is None). Returns a dict (with the parameter count and
    device name, for MFU); printing is the CLI's job."""
    from agentprm.bench.throughput import device_name

    config = PolicyConfig(temperature=0.0, max_new_tokens=new_tokens, device=device, static_cache=static_cache)
    policy = LMPolicy.from_spec(spec, config)
    gen = bench_generation(policy, max(batch_sizes), batch_sizes, new_tokens, repeats)
    dev, static = str(policy.device), policy.static_cache
    params = sum(p.numel() for p in policy.model.parameters())  # a tied LM head counted once
    del policy  # free the generation copy before loading the training one
    return {
        "spec": spec,
        "device": dev,
        "device_name": device_name() if dev.startswith("cuda") else "cpu",
        "params": params,
        "static_cache": static,
        "generate": gen,
        "sft": bench_sft(spec, device, sft_batch_size, sft_steps) if sft_steps > 0 else None,
    }
