"""Time training steps of a causal LM on the CPU in fp32 and under bf16 autocast (4 sequences × 512 tokens,
AdamW; 3 steps each, the first includes warm-up). usage: python bf16_step.py MODEL_DIR
As run at this stop on the 2-core AMD EPYC (AVX2, no AVX512-BF16/AMX), MODEL_DIR the main job's untrained
4.4 M base (runs/cpu-small/base): fp32 0.95 / 0.69 / 0.65 s, bf16 19.33 / 19.75 / 19.81 s."""
import sys
import time

import torch
from transformers import AutoModelForCausalLM


def main() -> None:
    m = AutoModelForCausalLM.from_pretrained(sys.argv[1])
    print(f"{sum(p.numel() for p in m.parameters()):,} parameters, {torch.get_num_threads()} threads")
    x = torch.randint(0, m.config.vocab_size, (4, 512), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(m.parameters(), 1e-4)
    for bf16 in (False, True):
        for _ in range(3):
            t = time.time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = m(input_ids=x, labels=x).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            print("bf16" if bf16 else "fp32", f"{time.time() - t:.2f} s", flush=True)


if __name__ == "__main__":
    main()
