"""Data-parallel training: 2 CPU processes (gloo, through `torchrun -m agentprm`, as a user launches
it) follow the loss curve of 1 process at the same global batch, for the PRM (soft BCE), SFT and the
policy step (online DPO); the main process alone writes the run folder.

Tolerance, 1e-4 absolute on every compared figure (losses here are 0.5-11): two processes compute the
same global-batch gradient as one but add it up in another order (each process's weighted mean,
then DDP's all-reduce average), so they differ from one process by float32 rounding, ~1e-7 relative
per step, compounding over the steps. Measured on these runs: PRM losses ≤ 4e-8, SFT ≤ 2e-6 (a loss
of ~10 summed over ~250 answer tokens), DPO loss ≤ 3e-7 and its KL estimate ≤ 7e-6. 1e-4 is 15x above
the largest of those, and far below what a wrong weighting moves a loss by: these runs split batches
unevenly (6 + 5 examples, 3 + 2 states, and a last batch of 1 that leaves one process empty), and
averaging the two processes' means instead of weighting them, or leaving out the factor of 2 that
DDP's average divides by, moved the PRM's logged losses by 4e-3 to 0.37 (measured by breaking
`train.parallel.loss_weight` on purpose).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_prm import write_rollouts
from test_sft import make_episode

from agentprm.targets import TargetsConfig, build_targets
from agentprm.train.dpo import PolicyTrainConfig, train_policy
from agentprm.train.prm import PRM, PRMConfig, train_prm
from agentprm.train.sft import SFTConfig, train_sft
from agentprm.trajectory import Episode, Step, TrajectoryWriter

TOL = 1e-4


def torchrun(*args: str) -> subprocess.CompletedProcess:
    """`agentprm ARGS` in 2 processes on the CPU (gloo); --standalone picks a free port, so parallel
    runs on one machine do not collide. One thread each: the two processes share the machine."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "agentprm", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def sets(values: dict) -> list[str]:
    """The same config on the command line (`--set field=value`; YAML reads False as false)."""
    return [x for k, v in values.items() for x in ("--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}")]


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*") if ".tmp" in p.name or ".old" in p.name]


def test_prm_two_processes_follow_the_one_process_loss_curve(tiny_model: str, tmp_path: Path) -> None:
    write_rollouts(tmp_path / "rollouts.jsonl")
    build_targets(TargetsConfig(rollouts=[str(tmp_path / "rollouts.jsonl")], out=str(tmp_path / "targets"),
                                gamma=0.5, val_fraction=0.5))
    # 12 training rows in batches of 11: steps of 11 (6 + 5 per process) and 1 (one process empty)
    cfg = {"model": tiny_model, "epochs": 2, "lr": 5e-3, "batch_size": 11, "warmup_ratio": 0.0,
           "scheduler": "constant", "max_length": 512, "device": "cpu", "seed": 0, "eval_each_epoch": False,
           "progress": False}
    one = train_prm(PRMConfig(data=str(tmp_path / "targets"), out=str(tmp_path / "one"), **cfg))

    r = torchrun("train-prm", "--data", str(tmp_path / "targets"), "--out", str(tmp_path / "two"), *sets(cfg))
    assert r.stdout.count("prm/val_bce") == 1  # the summary is printed once, not once per process
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    curve_one = [x for h in one["history"] for x in h["prm/step_losses"]]
    curve_two = [x for h in two["history"] for x in h["prm/step_losses"]]
    assert len(curve_one) == len(curve_two) == 4
    assert curve_two == pytest.approx(curve_one, abs=TOL)
    assert len({round(x, 3) for x in curve_one}) == 4  # the model did train
    for key in ("prm/val_bce", "prm/brier", "prm/auc"):  # validation scored in shares and gathered
        assert two[key] == pytest.approx(one[key], abs=TOL), key
    head_one = PRM.load(tmp_path / "one", device="cpu").head.weight
    head_two = PRM.load(tmp_path / "two", device="cpu").head.weight
    assert torch.allclose(head_one, head_two, atol=TOL)
    assert (tmp_path / "two" / "checkpoint" / "optimizer.pt").is_file() and no_temp_files(tmp_path / "two")


def test_sft_two_processes_follow_the_one_process_loss_curve(tiny_model: str, tmp_path: Path) -> None:
    demos = tmp_path / "demos.jsonl"
    with TrajectoryWriter(demos, fsync=False) as w:
        for i in range(12):
            w.write(make_episode(i))
    cfg = {"model": tiny_model, "max_steps": 5, "lr": 1e-3, "grad_accum": 1, "logging_steps": 1, "save_steps": 5,
           "eval_steps": 5, "val_fraction": 0.2, "history_window": 1, "device": "cpu"}
    # global batch 4: 4 per step in one process, 2 + 2 in two
    one = train_sft(SFTConfig(demos=[str(demos)], out=str(tmp_path / "one"), batch_size=4, progress=False, **cfg))
    torchrun("sft", "--demos", str(demos), "--out", str(tmp_path / "two"), "--batch-size", "2", *sets(cfg),
             "--set", "progress=false")
    summary_one = json.loads((tmp_path / "one" / "summary.json").read_text())
    summary_two = json.loads((tmp_path / "two" / "summary.json").read_text())
    curve_one, curve_two = summary_one["train_losses"], summary_two["train_losses"]
    assert [s for s, _ in curve_one] == [s for s, _ in curve_two] == [1, 2, 3, 4, 5]
    assert [x for _, x in curve_two] == pytest.approx([x for _, x in curve_one], abs=TOL)
    assert summary_two["metrics"]["sft/train_examples"] == one["sft/train_examples"]
    assert (tmp_path / "two" / "model" / "model.safetensors").is_file() and no_temp_files(tmp_path / "two")


def test_dpo_two_processes_follow_the_one_process_loss_curve(tiny_model: str, tmp_path: Path) -> None:
    prm = PRM.from_spec(tiny_model, device="cpu")
    torch.manual_seed(0)
    prm.head.weight.data.normal_(0, 1.0)  # an untrained head scores everything 0.5: no preferences
    prm.save(tmp_path / "prm")
    with TrajectoryWriter(tmp_path / "states.jsonl") as w:
        for e in range(3):
            steps = [Step(observation=f"You see a cabinet {i}. Room {e}.", action="look",
                          admissible_actions=["look", "go to cabinet 1", "inventory"]) for i in range(3)]
            w.write(Episode(episode_id=f"e{e}#0", game_id=f"game{e}", split="train", task_type="pick_and_place_simple",
                            task="put a mug in cabinet.", steps=steps))
    cfg = {"steps": 3, "lr": 1e-2, "batch_states": 5, "samples": 3, "temperature": 1.5, "max_new_tokens": 6,
           "history_window": 1, "device": "cpu"}  # 5 states per step: 3 + 2 per process
    states = str(tmp_path / "states.jsonl")
    train_policy(PolicyTrainConfig(policy=tiny_model, prm=str(tmp_path / "prm"), states=[states],
                                   out=str(tmp_path / "one"), **cfg), show_progress=False)
    torchrun("train-policy", "--policy", tiny_model, "--prm", str(tmp_path / "prm"), "--states", states,
             "--out", str(tmp_path / "two"), *sets(cfg))
    one, two = ([json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
                for d in ("one", "two"))
    assert [m["step"] for m in two] == [1, 2, 3]  # one line per step: only the main process writes
    for key in ("dpo/loss", "dpo/pairs", "prm/mean_reward", "policy/kl"):
        assert [m[key] for m in two] == pytest.approx([m[key] for m in one], abs=TOL), key
    assert no_temp_files(tmp_path / "two")


def test_the_whole_loop_refuses_a_multi_process_launch(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "agentprm", "train", "--config", str(tmp_path / "any.yaml")],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "WORLD_SIZE": "2"})
    assert r.returncode == 2 and "runs the whole loop in one process" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
