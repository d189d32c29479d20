"""Tokens/s and model FLOPs utilisation (MFU) of a run's stages, read from the summary.json files the
stages wrote (what `scripts/gpu-check.sh` prints at the end).

MFU = model FLOPs per second ÷ the GPU's peak dense bf16 FLOPs per second. A training token costs
about 6·N FLOPs (forward 2·N, backward 4·N; N = every parameter, embeddings included; the attention
term that grows with context length is left out, as in Kaplan et al. 2020), a generated token 2·N
(forward only). So MFU is an estimate for comparing runs and spotting a stage that is bound by
something other than the GPU's arithmetic (data, Python, memory bandwidth: a few %), not a profile.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's datasheets; matched against
# torch.cuda.get_device_name() in this order, so the PCIe/NVL variants come before their SXM parts.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200 NVL", 835.0),
    ("H100", 989.0),  # SXM, e.g. "NVIDIA H100 80GB HBM3"
    ("H200", 989.0),
    ("A100", 312.0),  # SXM and PCIe alike
)
TRAIN_FLOPS_PER_PARAM = 6
GENERATE_FLOPS_PER_PARAM = 2


def peak_bf16_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of a GPU named like torch.cuda.get_device_name(); None if not in the table."""
    name = device_name.upper()
    return next((tflops * 1e12 for key, tflops in PEAK_BF16_TFLOPS if key.upper() in name), None)


def mfu(params: int, tokens_per_s: float, peak_flops: float | None, flops_per_param: int) -> float | None:
    """flops_per_param · N · tokens/s ÷ peak (None without a peak)."""
    return flops_per_param * params * tokens_per_s / peak_flops if peak_flops else None


def device_name() -> str:
    """The GPU's name (the first one), or "cpu"."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def count_params(folder: Path) -> int:
    """Parameters of a saved model, from its safetensors headers (nothing is loaded; a tied LM head is
    stored once, so it is counted once)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 - safe_open is not a mapping
                n = 1
                for d in st.get_slice(key).get_shape():
                    n *= d
                total += n
    return total


def stage_rows(run: Path) -> list[dict[str, Any]]:
    """One row per figure in `run/*/summary.json`, stages in the order they ran: {stage, what,
    tokens_per_s, params, kind} (kind "train" or "generate": the FLOPs per token), or {stage, what,
    note} for the policy step and evaluations, whose speed is not one token rate."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(run).glob("*/summary.json"), key=lambda p: p.stat().st_mtime):
        s, stage = json.loads(path.read_text()), path.parent.name
        if "generate" in s:  # agentprm bench generate
            cache = "static" if s["static_cache"] else "dynamic"
            for r in s["generate"]["results"]:
                rows.append({"stage": stage, "what": f"generate, {cache} cache, batch {r['batch_size']}",
                             "tokens_per_s": r["tokens_per_s"], "params": s["params"], "kind": "generate"})
            if s["sft"] is not None:
                rows.append({"stage": stage, "what": f"SFT step on synthetic turns, batch {s['sft']['batch_size']}",
                             "tokens_per_s": s["sft"]["tokens_per_s"], "params": s["params"], "kind": "train"})
        elif "sft/tokens_per_s" in s.get("metrics", {}):
            m = s["metrics"]
            rows.append({"stage": stage, "what": f"SFT, {m['sft/steps_this_run']} steps",
                         "tokens_per_s": m["sft/tokens_per_s"], "params": count_params(path.parent / "model"),
                         "kind": "train"})
        elif s.get("history") and "prm/train_tokens_per_s" in s["history"][-1]:
            last = s["history"][-1]
            rows.append({"stage": stage, "what": f"PRM ({s['config']['loss']}), {last['epoch']} epoch(s)",
                         "tokens_per_s": last["prm/train_tokens_per_s"],
                         "params": count_params(path.parent / "model" / "backbone"), "kind": "train"})
        elif "steps" in s and "last" in s:  # the policy step
            rows.append({"stage": stage, "what": f"policy step ({s['config']['method']}), {s['steps']} steps",
                         "note": f"{s['wall_s'] / max(1, s['steps']):.2f} s/step (sample, score, update)"})
        elif s.get("command") == "eval":
            rows.append({"stage": stage, "what": f"eval, {s['eval/episodes']} games",
                         "note": f"success {100 * s['eval/success']:.1f} %, {s['wall_s']:.0f} s"})
    return rows


def with_mfu(rows: list[dict[str, Any]], peak: float | None) -> list[dict[str, Any]]:
    """The rows with "mfu" added where they have a token rate (None: no peak for this device)."""
    per_param = {"train": TRAIN_FLOPS_PER_PARAM, "generate": GENERATE_FLOPS_PER_PARAM}
    return [r | {"mfu": mfu(r["params"], r["tokens_per_s"], peak, per_param[r["kind"]])} if "kind" in r else r
            for r in rows]
