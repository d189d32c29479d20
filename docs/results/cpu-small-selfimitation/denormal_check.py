"""Step time of SFT-like training (16 x 1,024 random tokens, bf16 autocast, AdamW) from a model folder, with and
without flush-to-zero for denormal floats: does a trained model's training step run slower than a fresh one's?
usage: python denormal_check.py MODEL_DIR [MODEL_DIR ...]"""
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def seconds_per_step(path: str, flush: bool, steps: int = 6) -> float:
    torch.set_flush_denormal(flush)
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="sdpa")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(5, model.config.vocab_size, (16, 1024), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t)
    return sum(times[1:]) / (steps - 1)  # the first step warms up


if __name__ == "__main__":
    torch.set_num_threads(2)
    for path in sys.argv[1:]:
        for flush in (False, True):
            print(path, "flush" if flush else "noflush", f"{seconds_per_step(path, flush):.2f} s/step", flush=True)
