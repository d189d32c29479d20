"""The PRM on the seeded tiny LM: padding-invariant scores, save/load round trip, metrics against
hand values, and short training runs (soft BCE and Bradley–Terry) that must lower the loss and move
every head parameter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agentprm.errors import ModelLoadError
from agentprm.prompts import Turn, TurnContext
from agentprm.targets import TargetsConfig, build_targets, split_of
from agentprm.train.metrics import expected_calibration_error, reliability_bins, roc_auc
from agentprm.train.prm import PRM, PRMConfig, last_token_index, train_prm
from agentprm.trajectory import Episode, Step, TrajectoryWriter

CANDIDATES = ["go to fridge 1", "go to drawer 1", "look"]
GAMES = ["kitchen-1", "kitchen-2", "kitchen-3", "kitchen-5", "kitchen-6"]  # 1, 3 → val; 2, 5, 6 → train


def test_last_token_index_right_and_left_padding() -> None:
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 1, 1]])
    assert last_token_index(mask).tolist() == [1, 2, 2]


def test_roc_auc_hand_values() -> None:
    # positives 0.35 (rank 2) and 0.8 (rank 4): (6 − 3) / (2·2) = 0.75
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    # ties count one half: pos {0.5, 0.9} vs neg {0.5, 0.5} → (0.5 + 0.5 + 1 + 1) / 4
    assert roc_auc([0.5, 0.5, 0.5, 0.9], [False, True, False, True]) == 0.75
    assert roc_auc([0.2, 0.1], [False, True]) == 0.0
    assert roc_auc([0.2, 0.3], [True, True]) is None


def test_reliability_bins_and_ece_hand_values() -> None:
    bins = reliability_bins([0.05, 0.15, 0.12, 0.95, 1.0], [0, 1, 0, 1, 1])
    assert [b["count"] for b in bins] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]  # p = 1.0 goes to the last bin
    assert bins[1]["mean_p"] == pytest.approx(0.135) and bins[1]["frac_pos"] == 0.5
    assert bins[2]["mean_p"] is None
    # (1·0.05 + 2·0.365 + 2·0.025) / 5
    assert expected_calibration_error(bins) == pytest.approx(0.166)


@pytest.fixture(scope="module")
def prm(tiny_model: str) -> PRM:
    torch.manual_seed(0)
    return PRM.from_spec(tiny_model, device="cpu", history_window=2, max_length=512)


def contexts() -> tuple[list[TurnContext], list[str]]:
    hist = [Turn("You are in a kitchen.", "go to fridge 1"), Turn("The fridge is closed.", "open fridge 1")]
    ctxs = [
        TurnContext("put a mug in fridge", "You see a mug.", CANDIDATES),
        TurnContext("put a mug in fridge", "The fridge is open. In it you see an apple.", CANDIDATES, hist),
        TurnContext("heat an egg", "You are in the middle of a room.", ["go to microwave 1", "look"], hist[:1]),
    ]
    return ctxs, ["go to fridge 1", "look", "go to microwave 1"]


def test_scores_do_not_depend_on_batching(prm: PRM) -> None:
    ctxs, actions = contexts()
    together = prm.score(ctxs, actions, batch_size=3)
    alone = [prm.score([c], [a], batch_size=1)[0] for c, a in zip(ctxs, actions, strict=True)]
    assert together == pytest.approx(alone, abs=1e-5)
    assert all(0.0 < s < 1.0 for s in together)
    assert prm.texts(ctxs[:1], actions[:1])[0].endswith("assistant\nACTION: go to fridge 1")
    assert prm.logits([], []) == []  # a data-parallel process's empty share of a validation set


def test_candidates_sharing_a_prompt_score_as_forward_on_prompt_plus_answer(prm: PRM) -> None:
    # logits() reads a shared prompt once (KV cache) and runs each answer on top; it must give the
    # score of the plain forward pass on the whole text (what training optimises)
    ctxs, _ = contexts()
    with torch.no_grad():
        torch.nn.init.normal_(prm.head.weight, std=0.5)  # a non-zero head, so scores differ
    flat_ctx = [c for c in ctxs for _ in range(3)]
    flat_act = ["look", "take mug 1 from countertop 2", "go to sinkbasin 1"] * 3
    done: list[int] = []  # the progress hook hears of every pair once, batch by batch
    shared = prm.logits(flat_ctx, flat_act, batch_size=2, on_batch=done.append)
    assert sum(done) == len(flat_act) and len(done) > 1
    with torch.no_grad():
        plain = prm(*prm.collate(prm.token_ids(prm.texts(flat_ctx, flat_act)))).tolist()
    assert shared == pytest.approx(plain, abs=1e-4)
    assert len({round(x, 4) for x in shared}) > 3
    torch.nn.init.zeros_(prm.head.weight)


def test_save_load_round_trip(prm: PRM, tmp_path: Path) -> None:
    ctxs, actions = contexts()
    prm.save(tmp_path / "prm")
    prm.save(tmp_path / "prm")  # replacing an existing save works too
    again = PRM.load(tmp_path / "prm", device="cpu")
    assert again.history_window == 2 and again.max_length == 512
    assert again.score(ctxs, actions) == pytest.approx(prm.score(ctxs, actions), abs=1e-6)
    assert sorted(p.name for p in (tmp_path).iterdir()) == ["prm"]  # no temp folders left
    assert not list((tmp_path / "prm").rglob("*.bin")) and not list((tmp_path / "prm").rglob("*.pt"))
    with pytest.raises(ModelLoadError, match=r"no prm\.json"):
        PRM.load(tmp_path / "prm" / "backbone")
    head = tmp_path / "prm" / "head.safetensors"
    head.write_bytes(head.read_bytes()[:20])  # a crash mid-copy
    with pytest.raises(ModelLoadError, match=r"head\.safetensors is corrupt"):
        PRM.load(tmp_path / "prm", device="cpu")
    head.unlink()
    with pytest.raises(ModelLoadError, match=r"head\.safetensors is missing"):
        PRM.load(tmp_path / "prm", device="cpu")
    (tmp_path / "prm" / "prm.json").write_bytes(b"\xff{")
    with pytest.raises(ModelLoadError, match=r"prm\.json is corrupt"):
        PRM.load(tmp_path / "prm", device="cpu")


def write_rollouts(path: Path) -> None:
    """Per game: a win via the fridge (T=2) and a loss via the drawer (T=2). With γ = 0.5:
    s0 fridge 0.5, s0 drawer 0, put 1, look 0; one pair per game (fridge > drawer)."""
    assert [split_of(g, 0.5) for g in GAMES] == ["val", "train", "val", "train", "train"]
    with TrajectoryWriter(path, fsync=False) as w:
        for g in GAMES:
            for won, turns in ((True, [("go to fridge 1", "O1"), ("put mug in fridge 1", "")]),
                               (False, [("go to drawer 1", "O3"), ("look", "")])):
                obs = [f"You are in kitchen {g}.", turns[0][1]]
                steps = [Step(observation=o, admissible_actions=[*CANDIDATES, "put mug in fridge 1"], action=a)
                         for o, (a, _) in zip(obs, turns, strict=True)]
                w.write(Episode(episode_id=f"{g}-{won}", game_id=g, split="train", task_type="pick",
                                task="put a mug in fridge", steps=steps, won=won))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prm_data")
    write_rollouts(root / "rollouts.jsonl")
    summary = build_targets(TargetsConfig(rollouts=[str(root / "rollouts.jsonl")], out=str(root / "targets"),
                                          gamma=0.5, val_fraction=0.5))
    assert summary["targets/train/rows"] == 12 and summary["targets/val/rows"] == 8
    return root / "targets"


def config(data: Path, out: Path, tiny_model: str, **kw) -> PRMConfig:
    base = {"model": tiny_model, "epochs": 3, "lr": 5e-3, "batch_size": 4, "warmup_ratio": 0.0,
            "scheduler": "constant", "max_length": 512, "device": "cpu", "seed": 0}
    return PRMConfig(data=str(data), out=str(out), **{**base, **kw})


def test_soft_bce_training_learns_and_moves_every_head_parameter(data: Path, tmp_path: Path, tiny_model: str) -> None:
    fresh = PRM.from_spec(tiny_model, device="cpu")  # the head starts at zero: σ = 0.5 everywhere
    assert all(not p.any() for p in fresh.head.parameters())
    summary = train_prm(config(data, tmp_path / "run", tiny_model))
    losses = [h["prm/train_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0]
    after = PRM.load(tmp_path / "run", device="cpu")
    for name, p in after.head.named_parameters():
        assert p.requires_grad and p.any(), f"head parameter {name} did not change"
    pairs = zip(after.backbone.named_parameters(), fresh.backbone.parameters(), strict=True)
    unchanged = [name for (name, a), b in pairs if torch.equal(a, b)]
    assert not unchanged, f"backbone parameters did not change: {unchanged}"
    for key in ("prm/val_bce", "prm/brier", "prm/auc", "prm/ece"):
        assert summary[key] is not None, key
    assert summary["prm/data/train_examples"] == 12 and summary["prm/data/truncated"] == 0
    assert (tmp_path / "run" / "calibration.png").stat().st_size > 1000
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["prm/auc"] == summary["prm/auc"]
    assert (tmp_path / "run" / "checkpoint" / "optimizer.pt").is_file()


def test_resume_continues_after_the_last_epoch(data: Path, tmp_path: Path, tiny_model: str) -> None:
    train_prm(config(data, tmp_path / "run", tiny_model, epochs=1, max_rows=4))
    summary = train_prm(config(data, tmp_path / "run", tiny_model, epochs=2, max_rows=4))
    assert summary["prm/resumed_from_epoch"] == 1 and [h["epoch"] for h in summary["history"]] == [1, 2]


def test_bradley_terry_training_reports_pair_accuracy(data: Path, tmp_path: Path, tiny_model: str) -> None:
    summary = train_prm(config(data, tmp_path / "bt", tiny_model, loss="bradley-terry", batch_size=1))
    losses = [h["prm/train_loss"] for h in summary["history"]]
    assert losses[-1] < losses[0]
    assert 0.0 <= summary["prm/val_pair_acc"] <= 1.0 and "prm/val_bt" in summary
