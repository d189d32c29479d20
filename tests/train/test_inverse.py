"""InversePRM: the transition builder against hand values (a′ at the same s′, terminal turns, pooling,
DART noise), a training run that must not depend on any outcome label, and the CLI end to end."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from agentprm.train.inverse import InversePRMConfig, expert_transitions, learner_transitions, train_inverse_prm
from agentprm.train.prm import PRM
from agentprm.trajectory import Episode, Step, TrajectoryWriter, load_episodes

ACTIONS = ["go to fridge 1", "open fridge 1", "take mug 1 from fridge 1", "go to drawer 1", "look"]
GAMES = ["kitchen-1", "kitchen-2", "kitchen-3", "kitchen-5", "kitchen-6"]  # split_of(·, 0.5): 1, 3 → val


def ep(eid: str, actions: list[str], won: bool = False, game: str = "g", labels: list[str | None] | None = None,
       failed: str | None = None) -> Episode:
    """Turn t sees observation f"{eid} o{t}"; the reward sits on the last step (1 when won)."""
    steps = [Step(observation=f"{eid} o{t}", admissible_actions=ACTIONS, action=a,
                  expert_action=labels[t] if labels else None, done=t == len(actions) - 1,
                  reward=float(won and t == len(actions) - 1)) for t, a in enumerate(actions)]
    return Episode(episode_id=eid, game_id=game, split="train", task_type="pick", task="put a mug in drawer.",
                   steps=steps, won=won, truncated=not won, failed=failed)


def write(path: Path, episodes: list[Episode]) -> Path:
    with TrajectoryWriter(path, fsync=False) as w:
        for e in episodes:
            w.write(e)
    return path


def flipped(e: Episode) -> Episode:
    """The same episode with every outcome label inverted: won, truncated, done and rewards."""
    steps = [s.model_copy(update={"done": not s.done, "reward": 1.0 - s.reward}) for s in e.steps]
    return e.model_copy(update={"won": not e.won, "truncated": not e.truncated, "steps": steps})


def test_learner_transitions_keep_a_prime_at_the_same_next_state_and_pool_iterations(tmp_path: Path) -> None:
    it1 = write(tmp_path / "iter1.jsonl", [ep("A", ["a0", "a1", "a2"], won=True), ep("B", ["b0", "b1"])])
    it2 = write(tmp_path / "iter2.jsonl", [ep("C", ["c0"]), ep("D", ["d0", "d1"], failed="worker crashed"),
                                           ep("E", [])])
    got = learner_transitions(load_episodes([it1, it2]))
    # (episode, t, a, s′ observation, a′); None: terminal, Q(s′,a′) = 0. D failed and E is empty: skipped.
    # The released code's shift would give B's first transition a′ = a2 (A's last) or c0; here it is b1.
    assert [(x.episode_id, x.t, x.action, x.next_context and x.next_context.observation, x.next_action)
            for x in got] == [("A", 0, "a0", "A o1", "a1"), ("A", 1, "a1", "A o2", "a2"), ("A", 2, "a2", None, None),
                              ("B", 0, "b0", "B o1", "b1"), ("B", 1, "b1", None, None), ("C", 0, "c0", None, None)]
    assert [x.terminal for x in got] == [False, False, True, False, True, True]
    # s′ is exactly the state the next turn acts in: its history is s's plus (observation, action)
    a0, a1 = got[0], got[1]
    assert a0.next_context == a1.context
    assert [(h.observation, h.action) for h in a0.next_context.history] == [("A o0", "a0")]
    # outcome labels play no part: the same transitions with won/truncated/done/reward inverted
    assert learner_transitions([flipped(e) for e in load_episodes([it1, it2])]) == got


def test_expert_transitions_use_the_experts_labels_and_skip_dart_noise() -> None:
    # turn 1 was DART noise (took "n1", the expert said "y1"); turn 3 has no label: the action taken counts
    demo = ep("X", ["x0", "n1", "y2", "y3"], labels=["x0", "y1", "y2", None])
    got = expert_transitions([demo, ep("Y", ["z0"])])
    assert [(x.episode_id, x.t, x.action, x.next_context and x.next_context.observation, x.next_action)
            for x in got] == [("X", 0, "x0", "X o1", "y1"), ("X", 2, "y2", "X o3", "y3"), ("X", 3, "y3", None, None),
                              ("Y", 0, "z0", None, None)]


# -- training -----------------------------------------------------------------------------------------


def write_data(root: Path) -> tuple[Path, Path, Path]:
    """Per game: an expert demo (fridge, open, take: 3 turns) and two learner episodes, one won and
    one lost (the learner dithers: look, inventory, look). Returns (demos, rollouts, rollouts with every
    outcome label inverted)."""
    demos = [ep(f"{g}-demo", ACTIONS[:3], won=True, game=g) for g in GAMES]
    learner = [e for g in GAMES for e in (ep(f"{g}-won", ACTIONS[:3], won=True, game=g),
                                          ep(f"{g}-lost", ["look", "inventory", "look"], game=g))]
    return (write(root / "demos.jsonl", demos), write(root / "rollouts.jsonl", learner),
            write(root / "flipped.jsonl", [flipped(e) for e in learner]))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a small, shared machine two threads spin against other jobs (a tiny-model
    step measured 12x slower); the numbers are compared within a thread setting, never across."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return write_data(tmp_path_factory.mktemp("inverse_data"))


def config(demos: Path, rollouts: Path, out: Path, tiny_model: str, **kw) -> InversePRMConfig:
    base = {"model": tiny_model, "epochs": 3, "lr": 1e-3, "batch_size": 4, "warmup_ratio": 0.0,
            "scheduler": "constant", "max_length": 512, "history_window": 2, "val_fraction": 0.0,
            "device": "cpu", "seed": 0, "progress": False}
    return InversePRMConfig(demos=[str(demos)], rollouts=[str(rollouts)], out=str(out), **{**base, **kw})


def state(folder: Path) -> dict[str, torch.Tensor]:
    prm = PRM.load(folder, device="cpu")
    return {k: v.clone() for k, v in prm.state_dict().items()}


def test_training_never_reads_outcome_labels(data: tuple[Path, Path, Path], tmp_path: Path, tiny_model: str) -> None:
    demos, rollouts, inverted = data
    a = train_inverse_prm(config(demos, rollouts, tmp_path / "a", tiny_model))
    b = train_inverse_prm(config(demos, inverted, tmp_path / "b", tiny_model))
    losses = [h["inverse/train_loss"] for h in a["history"]]
    assert losses[-1] < losses[0]  # the discriminator learns: expert transitions end up rewarded more
    assert a["history"][-1]["inverse/train_expert_reward"] > a["history"][-1]["inverse/train_learner_reward"]
    assert [h["inverse/train_loss"] for h in b["history"]] == pytest.approx(losses, abs=1e-6, rel=0)
    wa, wb = state(tmp_path / "a"), state(tmp_path / "b")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) <= 1e-6
    fresh = PRM.from_spec(tiny_model, device="cpu").state_dict()
    assert all(not torch.equal(wa[k], fresh[k]) for k in fresh), "every parameter must move"
    # 5 demos × 3 turns; 10 learner episodes × 3 turns, one terminal each
    assert a["inverse/data/train_expert_transitions"] == 15 and a["inverse/data/train_expert_terminal"] == 5
    assert a["inverse/data/train_learner_transitions"] == 30 and a["inverse/data/train_learner_terminal"] == 10


def test_transition_caps_take_the_same_seeded_sample_per_side(data: tuple[Path, Path, Path], tmp_path: Path,
                                                               tiny_model: str) -> None:
    """max_transitions caps training and max_val_transitions validation, per side, in input order; the
    split itself is unchanged (val_fraction 0.5: 6 expert and 12 learner validation transitions)."""
    from agentprm.train.inverse import _load

    demos, rollouts, _ = data
    whole = _load(config(demos, rollouts, tmp_path / "w", tiny_model, val_fraction=0.5))
    assert len(whole["val", "expert"]) == 6 and len(whole["val", "learner"]) == 12
    capped = _load(config(demos, rollouts, tmp_path / "c", tiny_model, val_fraction=0.5, max_transitions=5,
                          max_val_transitions=4))
    again = _load(config(demos, rollouts, tmp_path / "c", tiny_model, val_fraction=0.5, max_transitions=5,
                         max_val_transitions=4))
    for split, side in whole:
        n = 5 if split == "train" else 4
        kept = capped[split, side]
        assert len(kept) == min(n, len(whole[split, side])) and kept == again[split, side]
        order = [whole[split, side].index(x) for x in kept]
        assert order == sorted(order)


# -- the command line ---------------------------------------------------------------------------------


def agentprm(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see `one_thread`
    return subprocess.run(["agentprm", *args], capture_output=True, text=True, timeout=600, env=env)


def test_cli_trains_validates_and_resumes(data: tuple[Path, Path, Path], tmp_path: Path, tiny_model: str) -> None:
    demos, rollouts, _ = data
    out = tmp_path / "inv"
    args = ["train-inverse-prm", "--demos", str(demos), "--rollouts", str(rollouts), "--rollouts", str(rollouts),
            "--model", tiny_model, "--out", str(out), "--lr", "1e-3", "--batch-size", "4",
            "--set", "device=cpu", "--set", "max_length=512", "--set", "val_fraction=0.5", "--set", "progress=false"]
    r = agentprm(*args, "--epochs", "1")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    # val_fraction 0.5: kitchen-1 and kitchen-3 are validation games; the rollouts file is given twice
    assert summary["inverse/data/train_expert_transitions"] == 9 and summary["inverse/data/val_expert_transitions"] == 6
    assert summary["inverse/data/train_learner_transitions"] == 36
    # the per-epoch figures reach the terminal, not only summary.json (the CLI gives the package's log a handler)
    assert '"inverse/val_accuracy"' in r.stderr and "9 expert and 36 learner transitions" in r.stderr
    assert 0.0 <= summary["inverse/val_accuracy"] <= 1.0 and summary["inverse/val_loss"] > 0
    prm = PRM.load(out, device="cpu")  # what train-policy and Best-of-N load
    assert len(prm.score([learner_transitions(load_episodes([rollouts]))[0].context], ["look"])) == 1
    r = agentprm(*args, "--epochs", "2")  # one more epoch, from the checkpoint
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inverse/resumed_from_epoch"] == 1 and [h["epoch"] for h in summary["history"]] == [1, 2]
    assert "resuming from" in r.stderr and "after epoch 1" in r.stderr
    r = agentprm(*args, "--gamma", "2")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "gamma" in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1
