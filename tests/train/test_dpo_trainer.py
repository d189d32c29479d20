"""The online DPO / rejection policy step on real games with tiny models: updates, monitor, resume."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from agentprm.envs.games import find_games
from agentprm.train.dpo import PolicyTrainConfig, train_policy
from agentprm.train.prm import PRM
from agentprm.trajectory import Episode, Step, TrajectoryWriter


def _states(path, game_id: str) -> None:
    steps = [Step(observation=f"You see a cabinet {i}.", admissible_actions=["look", "go to cabinet 1", "inventory"],
                  action="look") for i in range(3)]
    with TrajectoryWriter(path) as w:
        w.write(Episode(episode_id="e#0", game_id=game_id, split="train", task_type="pick_and_place_simple",
                        task="put a mug in cabinet.", steps=steps))


def _setup(tmp_path, tiny_model):
    prm = PRM.from_spec(tiny_model)
    torch.manual_seed(0)
    prm.head.weight.data.normal_(0, 1.0)  # an untrained head scores everything 0.5: no preferences
    prm.save(tmp_path / "prm")
    _states(tmp_path / "states.jsonl", find_games("train")[0].game_id)


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


def _changed(a: dict, b: dict) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a)


def test_dpo_with_monitor_keeps_best_and_resumes(alfworld_root, tiny_model, tmp_path):
    _setup(tmp_path, tiny_model)
    cfg = dict(policy=tiny_model, prm=str(tmp_path / "prm"), states=[str(tmp_path / "states.jsonl")],
               out=str(tmp_path / "pi1"), steps=1, batch_states=3, lr=1e-2, temperature=1.5, max_new_tokens=6,
               history_window=1, monitor_every=1, monitor_games=1, max_steps_per_episode=2, workers=1)
    first = train_policy(PolicyTrainConfig(**cfg), show_progress=False)
    assert first["steps"] == 1 and first["monitor/best_step"] == 0  # step 0 = π_{i-1} itself
    log = (tmp_path / "pi1" / "metrics.jsonl").read_text().splitlines()
    assert len(log) == 1 and "monitor/success" in json.loads(log[0]) and "policy/kl" in json.loads(log[0])
    assert json.loads(log[0])["dpo/pairs"] > 0

    again = train_policy(PolicyTrainConfig(**{**cfg, "steps": 2}), show_progress=False)  # resume, one more step
    lines = (tmp_path / "pi1" / "metrics.jsonl").read_text().splitlines()
    assert again["steps"] == 2 and lines[0] == log[0] and json.loads(lines[1])["step"] == 2
    assert (tmp_path / "pi1" / "reward_hacking.png").stat().st_size > 0
    # no step beat π_{i-1} on the monitor (success stays 0 with 2-step episodes): the kept model is π_{i-1}
    assert not _changed(_weights(tmp_path / "pi1" / "model"), load_file(f"{tiny_model}/model.safetensors"))


def test_dpo_and_rejection_move_the_weights(alfworld_root, tiny_model, tmp_path):
    _setup(tmp_path, tiny_model)
    base = load_file(f"{tiny_model}/model.safetensors")
    for method in ("dpo", "rejection"):
        out = tmp_path / method
        summary = train_policy(PolicyTrainConfig(
            policy=tiny_model, prm=str(tmp_path / "prm"), states=[str(tmp_path / "states.jsonl")], out=str(out),
            method=method, steps=1, batch_states=3, samples=3, lr=1e-2, temperature=1.5, max_new_tokens=6,
            history_window=1), show_progress=False)
        key = "dpo/loss" if method == "dpo" else "rejection/nll"
        assert key in summary["last"]
        assert _changed(_weights(out / "model"), base)
