"""What the PRM reads after the prompt (`PRMConfig.reads`): the whole answer (reason + action, the
paper's) or the action alone; rows without a reason read `ACTION: a` either way, token for token."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from agentprm.errors import ConfigError, ModelLoadError
from agentprm.prompts import Turn, TurnContext, format_answer
from agentprm.targets import PAIR_SCHEMA, TargetsConfig, build_targets, read_rows, row_to_context
from agentprm.train.prm import PRM, PRMConfig, _examples, row_reasons, train_prm
from agentprm.trajectory import Episode, Step, TrajectoryWriter

CTX = TurnContext("put a mug in fridge", "You see a mug.", ["go to fridge 1", "look"],
                  [Turn("You are in a kitchen.", "go to countertop 1")])


@pytest.fixture(scope="module")
def prms(tiny_model: str) -> dict[str, PRM]:
    """Two PRMs on one backbone with one non-zero head (a zero head scores everything alike), one per mode."""
    answer = PRM.from_spec(tiny_model, device="cpu", history_window=2, max_length=512, reads="answer")
    action = PRM(answer.backbone, answer.tokenizer, 2, 512, reads="action")
    with torch.no_grad():
        torch.nn.init.normal_(answer.head.weight, generator=torch.Generator().manual_seed(0), std=0.5)
    action.head.load_state_dict(answer.head.state_dict())
    return {"answer": answer, "action": action}


def row(action: str, reason: str | None, q: float = 0.5) -> dict:
    """A targets row as `targets._row` writes it (history as JSON)."""
    return {"key": f"k-{action}-{reason}", "state_key": "s", "game_id": "g", "split": "train", "task_type": "pick",
            "task": CTX.task, "history": json.dumps([{"observation": "You are in a kitchen.",
                                                      "action": "go to countertop 1"}]),
            "observation": CTX.observation, "admissible_actions": CTX.admissible_actions, "action": action,
            "reason": reason, "q": q, "visits": 1, "t": 0}


def test_the_prm_input_text_of_hand_built_rows_in_both_modes(prms: dict[str, PRM]) -> None:
    rows = [row("go to fridge 1", "the mug goes in the fridge"), row("look", None)]
    old = {k: v for k, v in row("look", "x").items() if k != "reason"}  # targets written before reasons
    ctx = [row_to_context(r) for r in [*rows, old]]
    acts = [r["action"] for r in [*rows, old]]
    prompt = prms["answer"].prompts([CTX])[0]
    assert prms["answer"].texts(ctx, acts, row_reasons([*rows, old])) == [
        prompt + "REASON: the mug goes in the fridge\nACTION: go to fridge 1",
        prompt + "ACTION: look",
        prompt + "ACTION: look",
    ]
    assert prms["action"].texts(ctx, acts, row_reasons([*rows, old])) == [
        prompt + "ACTION: go to fridge 1", prompt + "ACTION: look", prompt + "ACTION: look"]
    pair = {"chosen": "go to fridge 1", "rejected": "look", "reason_chosen": "r1", "reason_rejected": None}
    assert row_reasons([pair], "reason_chosen") == ["r1"] and row_reasons([pair], "reason_rejected") == [None]


def test_without_reasons_answer_mode_is_exactly_the_action_only_prm(prms: dict[str, PRM], tmp_path: Path) -> None:
    ctx = [CTX, CTX, CTX]
    acts = ["go to fridge 1", "look", "take mug 1 from countertop 1"]
    before = prms["action"].logits(ctx, acts)  # what every PRM read before `reads` existed
    assert prms["answer"].logits(ctx, acts) == before
    assert prms["answer"].logits(ctx, acts, reasons=[None, None, None]) == before
    assert prms["action"].logits(ctx, acts, reasons=["why", "not", "x"]) == before  # "action" ignores reasons
    assert len(set(before)) == 3
    # training data too: the same token ids, so an action-only policy's PRM trains exactly as before
    rows = [row(a, None, q) for a, q in zip(acts, (1.0, 0.0, 0.5), strict=True)]
    cfg = PRMConfig(data=str(tmp_path), out=str(tmp_path / "out"))
    assert _examples(prms["answer"], cfg, rows, []) == _examples(prms["action"], cfg, rows, [])
    with_reason = [row(a, "because", q) for a, q in zip(acts, (1.0, 0.0, 0.5), strict=True)]
    assert _examples(prms["answer"], cfg, with_reason, []) != _examples(prms["action"], cfg, with_reason, [])


def test_the_whole_answer_changes_the_score(prms: dict[str, PRM]) -> None:
    z = prms["answer"].logits([CTX, CTX], ["look", "look"], reasons=[None, "the mug is not here"])
    assert z[0] != pytest.approx(z[1], abs=1e-4)
    with torch.no_grad():  # the shared-prompt path scores the text training reads
        text = prms["answer"].texts([CTX], ["look"], ["the mug is not here"])
        plain = prms["answer"](*prms["answer"].collate(prms["answer"].token_ids(text))).item()
    assert z[1] == pytest.approx(plain, abs=1e-4)


def test_prm_json_keeps_what_the_prm_reads_and_old_files_read_the_action(prms: dict[str, PRM],
                                                                        tmp_path: Path) -> None:
    prms["answer"].save(tmp_path / "new")
    meta = json.loads((tmp_path / "new" / "prm.json").read_text())
    assert meta["reads"] == "answer" and meta["version"] == 2
    again = PRM.load(tmp_path / "new", device="cpu")
    assert again.reads == "answer"
    assert again.score([CTX], ["look"], reasons=["r"]) == pytest.approx(
        prms["answer"].score([CTX], ["look"], reasons=["r"]), abs=1e-6)
    del meta["reads"]
    meta["version"] = 1  # written before `reads` existed
    (tmp_path / "new" / "prm.json").write_text(json.dumps(meta))
    assert PRM.load(tmp_path / "new", device="cpu").reads == "action"
    meta["reads"] = "reason"
    (tmp_path / "new" / "prm.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="reads='reason'"):
        PRM.load(tmp_path / "new", device="cpu")


def write_rollouts(path: Path) -> None:
    """Two games (both train with val_fraction 0), each: a win with a reasoned answer at turn 0, a loss."""
    with TrajectoryWriter(path, fsync=False) as w:
        for g in ("kitchen-2", "kitchen-5"):
            for won, action, reason in ((True, "go to fridge 1", "the mug goes in the fridge"),
                                        (False, "look", None)):
                steps = [Step(observation=f"You see a mug in {g}.", admissible_actions=["go to fridge 1", "look"],
                              action=action, reason=reason, raw_output=format_answer(action, reason))]
                w.write(Episode(episode_id=f"{g}-{won}", game_id=g, split="train", task_type="pick",
                                task="put a mug in fridge", steps=steps, won=won))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reads")
    write_rollouts(root / "rollouts.jsonl")
    build_targets(TargetsConfig(rollouts=[str(root / "rollouts.jsonl")], out=str(root / "targets"),
                                val_fraction=0.0))
    return root / "targets"


def config(data: Path, out: Path, tiny_model: str, **kw) -> PRMConfig:
    base = {"model": tiny_model, "epochs": 1, "lr": 5e-3, "batch_size": 2, "max_length": 512, "device": "cpu",
            "progress": False}
    return PRMConfig(data=str(data), out=str(out), **{**base, **kw})


def test_train_prm_reads_the_rows_reasons_and_saves_the_mode(data: Path, tmp_path: Path, tiny_model: str) -> None:
    pairs = read_rows(data / "pairs_train.parquet")
    assert [(p["reason_chosen"], p["reason_rejected"]) for p in pairs] == [("the mug goes in the fridge", None)] * 2
    assert PRMConfig(data=str(data), out="x").reads == "answer"  # the paper's default
    for reads in ("answer", "action"):
        summary = train_prm(config(data, tmp_path / reads, tiny_model, loss="bradley-terry", reads=reads))
        assert summary["config"]["reads"] == reads and summary["prm/data/train_pairs"] == 2
        assert PRM.load(tmp_path / reads, device="cpu").reads == reads
    with pytest.raises(ConfigError, match="reads"):  # a checkpoint of the other mode is not resumed
        train_prm(config(data, tmp_path / "action", tiny_model, loss="bradley-terry", epochs=2))
    with pytest.raises(ConfigError, match="reads='reason'"):
        PRMConfig(data=str(data), out="x", reads="reason").validate()  # type: ignore[arg-type]


def test_bradley_terry_without_pairs_leaves_the_prm_untrained(data: Path, tmp_path: Path, tiny_model: str) -> None:
    # rollouts that never won give no pair: the stage reports it and the run goes on
    empty = tmp_path / "targets"
    empty.mkdir()
    for name in ("train.parquet", "val.parquet", "pairs_val.parquet"):
        (empty / name).write_bytes((data / name).read_bytes())
    pq.write_table(PAIR_SCHEMA.empty_table(), empty / "pairs_train.parquet")
    summary = train_prm(config(empty, tmp_path / "bt", tiny_model, loss="bradley-terry"))
    assert summary["prm/data/train_pairs"] == 0 and summary["prm/data/train_examples"] == 0
    assert summary["history"] == [] and summary["prm/train_loss"] is None
    prm = PRM.load(tmp_path / "bt", device="cpu")
    assert prm.score([CTX, CTX], ["look", "go to fridge 1"]) == [0.5, 0.5]
