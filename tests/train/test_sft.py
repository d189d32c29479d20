"""SFT on a hand-built demo set with the tiny model: loss falls, weights move, resume continues,
corrupt checkpoints are skipped or reported as ModelLoadError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import DataCollatorForSeq2Seq

from agentprm.errors import ConfigError, ModelLoadError
from agentprm.models import load_causal_lm, load_tokenizer
from agentprm.train.sft import (
    SFTConfig,
    _labels,
    episodes_to_examples,
    first_repeat,
    last_good_checkpoint,
    split_by_game,
    tokenize_example,
    train_sft,
)
from agentprm.trajectory import Episode, Step, TrajectoryWriter

ROOMS = ["sink 1", "desk 1", "shelf 2", "fridge 1", "cabinet 3", "drawer 1"]


def make_episode(i: int, won: bool = True) -> Episode:
    """A 3-turn demo: go to a place, take the mug, put it down; each game has its own place."""
    place = ROOMS[i % len(ROOMS)]
    plan = [f"go to {place}", f"take mug 1 from {place}", "go to sink 1"]
    steps = [
        Step(
            observation=f"Turn {t}. You are in the kitchen. You see a {place}.",
            admissible_actions=["look", "inventory", plan[t]],
            action=plan[t],
            reward=1.0 if (won and t == 2) else 0.0,
            done=t == 2,
        )
        for t in range(3)
    ]
    return Episode(
        episode_id=f"ep{i}", game_id=f"game{i}", split="train", task_type="pick",
        task="put a mug in the sink", steps=steps, won=won,
    )


@pytest.fixture()
def demos(tmp_path: Path) -> str:
    path = tmp_path / "demos.jsonl"
    with TrajectoryWriter(path, fsync=False) as w:
        for i in range(6):
            w.write(make_episode(i))
        w.write(make_episode(99, won=False))  # a lost episode is never a demonstration
    return str(path)


def looping_episode() -> Episode:
    """A lost learner episode with expert labels: shelf 1 → 2 → 1 → 2 (turn 3 repeats turn 1: the loop)."""
    turns = [("You are in the room.", "go to shelf 1", "go to shelf 2"),  # another search order
             ("You arrive at shelf 1.", "go to shelf 2", "go to shelf 2"),
             ("You arrive at shelf 2.", "go to shelf 1", "go to shelf 3"),
             ("You arrive at shelf 1.", "go to shelf 2", "go to shelf 3"),  # repeats turn 1
             ("You arrive at shelf 2.", "go to shelf 1", "go to shelf 3"),  # repeats turn 2
             ("You arrive at shelf 1.", "go to shelf 2", None)]
    steps = [Step(observation=o, admissible_actions=[a], action=a, expert_action=e) for o, a, e in turns]
    return Episode(episode_id="loop", game_id="g", split="train", task_type="pick", task="find a mug",
                   steps=steps, won=False)


def test_first_repeat_is_where_the_loop_starts() -> None:
    assert first_repeat(looping_episode()) == 3
    assert first_repeat(make_episode(0)) is None


def test_relabels_from_the_first_repeat_skip_earlier_disagreements() -> None:
    ep = looping_episode()
    # from the start: every disagreement (turns 0, 2, 3, 4), capped at max_relabels
    assert _labels(ep, "expert", None) == ["go to shelf 2", "go to shelf 2", "go to shelf 3", "go to shelf 3",
                                           "go to shelf 3", None]
    assert _labels(ep, "expert", 2) == ["go to shelf 2", "go to shelf 2", "go to shelf 3", None, None, None]
    # from the first repeat (turn 3): turns 0 and 2 dropped, the agreeing turn 1 kept, the cap counts from turn 3
    assert _labels(ep, "expert", None, "first_repeat") == [None, "go to shelf 2", None, "go to shelf 3",
                                                           "go to shelf 3", None]
    assert _labels(ep, "expert", 1, "first_repeat") == [None, "go to shelf 2", None, "go to shelf 3", None, None]
    # an episode that never repeats keeps only its agreeing turns
    calm = Episode(**{**ep.model_dump(), "steps": ep.steps[:3]})
    assert _labels(calm, "expert", None, "first_repeat") == [None, "go to shelf 2", None]
    with pytest.raises(ConfigError, match="relabel_from"):
        SFTConfig(demos=["x"], model="m", out="o", relabel_from="loops")


def test_examples_one_per_turn_of_won_episodes_only() -> None:
    exs = episodes_to_examples([make_episode(0), make_episode(1, won=False)], history_window=1)
    assert [e["answer"] for e in exs] == ["ACTION: go to sink 1", "ACTION: take mug 1 from sink 1",
                                          "ACTION: go to sink 1"]
    assert "Previous turns" not in exs[0]["prompt_messages"][1]["content"]
    assert "Action: take mug 1 from sink 1" in exs[2]["prompt_messages"][1]["content"]


def test_labels_cover_answer_and_end_of_turn_only(tiny_model: str) -> None:
    tok = load_tokenizer(tiny_model)
    row = tokenize_example(tok, episodes_to_examples([make_episode(2)])[0])
    supervised = [t for t in row["labels"] if t != -100]
    assert tok.decode(supervised) == "ACTION: go to shelf 2<|im_end|>"
    n_prompt = row["labels"].index(supervised[0])
    assert all(t == -100 for t in row["labels"][:n_prompt])
    assert row["input_ids"][n_prompt:] == supervised


def test_left_padded_batch_keeps_labels_aligned(tiny_model: str) -> None:
    """answer_only_loss needs every row's answer at the end: labels must be left-padded too."""
    tok = load_tokenizer(tiny_model)
    tok.padding_side = "left"
    rows = [tokenize_example(tok, ex) for ex in episodes_to_examples([make_episode(0)])]
    batch = DataCollatorForSeq2Seq(tok)(rows)
    assert len({len(r["input_ids"]) for r in rows}) == 3  # padding really happens
    assert ((batch["labels"] == -100) | (batch["labels"] == batch["input_ids"])).all()
    assert (batch["labels"][:, -1] == batch["input_ids"][:, -1]).all()


def test_split_is_by_game() -> None:
    exs = episodes_to_examples([make_episode(i) for i in range(10)])
    train, val = split_by_game(exs, 0.2, seed=0)
    assert len({e["game_id"] for e in val}) == 2
    assert not {e["game_id"] for e in train} & {e["game_id"] for e in val}


def _cfg(demos: str, out: Path, model: str, **kw: object) -> SFTConfig:
    base = dict(demos=[demos], model=model, out=str(out), lr=1e-2, warmup=0, batch_size=8, grad_accum=1,
                val_fraction=0.2, logging_steps=1, eval_steps=10, save_steps=100, progress=False, device="cpu")
    return SFTConfig(**(base | kw))  # type: ignore[arg-type]


def test_loss_falls_and_every_weight_moves(demos: str, tiny_model: str, tmp_path: Path) -> None:
    m = train_sft(_cfg(demos, tmp_path / "run", tiny_model, max_steps=20, batch_size=4))
    assert m["sft/train_loss"] < 0.3 * m["sft/train_loss_first"]
    assert m["sft/val_loss"] < m["sft/train_loss_first"]
    assert m["sft/train_examples"] + m["sft/val_examples"] == 18  # 6 won episodes × 3 turns
    assert m["sft/tokens"] > 0 and m["sft/tokens_per_s"] > 0
    before = load_file(str(Path(tiny_model) / "model.safetensors"))
    after = load_file(str(tmp_path / "run" / "model" / "model.safetensors"))
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, f"parameters not trained: {unchanged}"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metrics"]["sft/global_step"] == 20


def test_resume_continues_from_last_checkpoint(demos: str, tiny_model: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train_sft(_cfg(demos, out, tiny_model, max_steps=4, save_steps=2))
    assert first["sft/resumed_from"] is None and first["sft/global_step"] == 4
    second = train_sft(_cfg(demos, out, tiny_model, max_steps=6, save_steps=2))
    assert Path(second["sft/resumed_from"]).name == "checkpoint-4"
    assert second["sft/global_step"] == 6 and second["sft/steps_this_run"] == 2


def test_corrupt_checkpoints(demos: str, tiny_model: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_sft(_cfg(demos, out, tiny_model, max_steps=4, save_steps=2, val_fraction=0.0))
    weights = out / "checkpoints" / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a crash mid-save
    with pytest.warns(UserWarning, match="checkpoint-4"):
        assert Path(last_good_checkpoint(out / "checkpoints") or "").name == "checkpoint-2"
    final = out / "model" / "model.safetensors"
    final.write_bytes(final.read_bytes()[: final.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_causal_lm(str(out / "model"))
    with pytest.raises(ModelLoadError):
        load_causal_lm(str(tmp_path / "no_such_model"))
    # a mistyped relative folder looks like a hub id: it must fail offline at once, never go online
    with pytest.raises(ModelLoadError, match="not a hub model in the local Hugging Face cache"):
        load_causal_lm("no_such_run/model")
