"""scripts/gpu-check.sh: its MFU arithmetic against hand values, and the whole script end to end on the
CPU (`--dry-run`: tiny model, 2 games, a few steps), since CI has no GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentprm.bench.throughput import count_params, mfu, peak_bf16_flops

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu-check.sh"


def test_peak_flops_by_gpu_name() -> None:
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12  # SXM
    assert peak_bf16_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_bf16_flops("NVIDIA H100 NVL") == 835e12
    assert peak_bf16_flops("NVIDIA H200") == 989e12
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") == peak_bf16_flops("NVIDIA A100 80GB PCIe") == 312e12
    assert peak_bf16_flops("NVIDIA GeForce RTX 4090") is None and peak_bf16_flops("cpu") is None


def test_mfu_hand_values() -> None:
    # SmolLM2-135M training at 140k tokens/s on an H100: 6 · 135e6 · 1.4e5 / 989e12 = 0.11466
    assert mfu(135_000_000, 140_000, 989e12, 6) == pytest.approx(0.114661, abs=1e-6)
    # generating 23k tokens/s: 2 · 135e6 · 2.3e4 / 989e12 = 0.00628
    assert mfu(135_000_000, 23_000, 989e12, 2) == pytest.approx(0.0062791, abs=1e-6)
    assert mfu(135_000_000, 23_000, None, 2) is None


def test_count_params_reads_safetensors_headers(tiny_model: str) -> None:
    from agentprm.models import load_causal_lm

    model = load_causal_lm(tiny_model, "cpu")
    assert count_params(Path(tiny_model)) == sum(p.numel() for p in model.parameters())  # tied head once


def run_script(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable})


def test_without_a_gpu_the_real_check_stops_with_one_line() -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the real check would run")
    r = run_script(timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "gpu-check: torch sees no CUDA GPU (use --dry-run to check the steps on the CPU)"]


def test_dry_run_runs_every_step_and_prints_throughput(alfworld_root: Path, tiny_model: str, tmp_path: Path) -> None:
    out = tmp_path / "gpu-check"
    r = run_script("--dry-run", "--out", str(out))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    for stage in ("bench-dynamic", "bench-static", "demos", "sft", "rollouts", "prm", "policy", "eval"):
        assert (out / stage / "summary.json").is_file(), stage
    assert json.loads((out / "bench-static" / "summary.json").read_text())["static_cache"] is True
    assert json.loads((out / "bench-dynamic" / "summary.json").read_text())["static_cache"] is False
    report = json.loads((out / "throughput.json").read_text())
    whats = [row["what"] for row in report["rows"]]
    for expected in ("generate, dynamic cache, batch 2", "generate, static cache, batch 2", "SFT, 2 steps",
                     "PRM (soft-bce), 1 epoch(s)", "policy step (dpo), 1 steps", "eval, 2 games"):
        assert expected in whats, (expected, whats)
    rates = [row for row in report["rows"] if "tokens_per_s" in row]
    assert all(row["tokens_per_s"] > 0 and row["mfu"] is None for row in rates)  # CPU: no peak, MFU n/a
    assert report["peak_bf16_flops"] is None and "MFU n/a" in r.stdout
    assert r.stdout.count("== gpu-check") == 10 and "gpu-check: done in" in r.stdout
