"""GPU diagnosis of the NaN SFT: 150-step SFT variants (attention kernel, bf16 autocast, lr), then the full
SFT with the first variant that stays finite, saved under OUT/pi0. usage: diag.py DEMOS BASE OUT STEPS EPOCHS"""
import json
import math
import sys
import time
from pathlib import Path

from agentprm.train import sft as S

demos, base, out, steps, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
orig_args, orig_load = S._training_args, S.load_causal_lm
state = {"attn": "sdpa", "bf16": True}


def training_args(cfg, has_val, cuda):
    a = orig_args(cfg, has_val, cuda)
    a.bf16 = state["bf16"]
    return a


def load(*a, **k):
    m = orig_load(*a, **k)
    m.set_attn_implementation(state["attn"])
    return m


S._training_args, S.load_causal_lm = training_args, load


def run(name, attn, bf16, lr, **kw):
    state.update(attn=attn, bf16=bf16)
    cfg = S.SFTConfig(demos=[demos], model=base, out=f"{out}/{name}", lr=lr, batch_size=32, grad_accum=1,
                      warmup=0.03, max_length=2048, val_fraction=0.05, history_window=None, logging_steps=10,
                      eval_steps=100000, save_steps=100000, progress=False, **kw)
    t = time.time()
    S.train_sft(cfg)
    s = json.loads(Path(f"{out}/{name}/summary.json").read_text())
    losses = [v for _, v in s.get("train_losses", [])]
    ok = all(math.isfinite(v) for v in losses) and all(v > 0 for v in losses[1:])
    r = {"name": name, "attn": attn, "bf16": bf16, "lr": lr, "finite": ok, "losses": losses[:40],
         "val_loss": s["metrics"].get("sft/val_loss"), "tok_s": s["metrics"].get("sft/tokens_per_s"),
         "s": round(time.time() - t, 1)}
    print(json.dumps(r), flush=True)
    return r


results = []
for name, attn, bf16, lr in [("sdpa-bf16-1e-3", "sdpa", True, 1e-3), ("eager-bf16-1e-3", "eager", True, 1e-3),
                             ("sdpa-fp32-1e-3", "sdpa", False, 1e-3), ("sdpa-bf16-3e-4", "sdpa", True, 3e-4)]:
    results.append(run(name, attn, bf16, lr, max_steps=steps))
Path(f"{out}/diag.json").write_text(json.dumps(results, indent=1))
good = [r for r in results if r["finite"]]
if not good:
    sys.exit("no variant stayed finite")
g = good[0]
print("full SFT with", g["name"], flush=True)
r = run("pi0", g["attn"], g["bf16"], g["lr"], epochs=epochs)
Path(f"{out}/diag.json").write_text(json.dumps([*results, r], indent=1))
