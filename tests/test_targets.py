"""Monte Carlo targets (Eq. 1) on a hand-built rollout set, every Q̂ worked out by hand (γ = 0.5).

Game "kitchen-2" lands in train and "kitchen-1" in val for val_fraction=0.5, seed=0 (checked below).
Train game, task "put a mug in fridge", start state s0 (observation O0, the same candidates):

  ep1 won,  T=3: s0 -fridge-> O1 -open-> O2 -put->        returns 0.25, 0.5, 1
  ep2 won,  T=2: s0 -fridge-> O1 -put->                    returns 0.5, 1
  ep3 lost, T=2: s0 -drawer-> O3 -look->                   returns 0, 0
  ep4 cut off (truncated), T=3: s0 -fridge-> O1 -open-> O2 -look->   returns 0, 0, 0
  ep5 won,  T=4: s0 -examine-> O4 -fridge-> O1 -open-> O2 -put->     returns 0.125, 0.25, 0.5, 1

  s0: fridge (ep1, ep2, ep4) Q̂ = (0.25 + 0.5 + 0)/3 = 0.25, 3 visits; drawer 0; examine 0.125
  s1 = [s0 fridge] O1: open (ep1, ep4) = (0.5 + 0)/2 = 0.25; put (ep2) = 1
  s2 = [s0 fridge, O1 open] O2: put (ep1) = 1; look (ep4) = 0
  ep3 t1 look 0; ep5 t1..t3 (other history, so other states) 0.25, 0.5, 1        → 11 train rows
Pairs with δ = 0.2: s0 fridge>drawer (gap 0.25, just above); fridge/examine and examine/drawer
(gap 0.125, just below) are not pairs; s1 put>open (0.75); s2 put>look (1)           → 3 pairs
Val game: ep6 won T=2 → 0.5, 1; ep7 failed (worker crash) is skipped.               → 2 val rows
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from agentprm.contexts import contexts_from_episode
from agentprm.errors import ConfigError
from agentprm.targets import (
    TargetsConfig,
    build_targets,
    pair_key,
    read_rows,
    representative_reason,
    row_to_context,
    split_of,
    state_key,
)
from agentprm.trajectory import Episode, Step, TrajectoryWriter

TASK = "put a mug in fridge"
CANDIDATES = ["go to fridge 1", "go to drawer 1", "examine shelf 1", "look"]
FRIDGE, DRAWER, EXAMINE, OPEN, PUT, LOOK = (
    "go to fridge 1", "go to drawer 1", "examine shelf 1", "open fridge 1", "put mug in fridge 1", "look",
)
TRAIN_GAME, VAL_GAME = "kitchen-2", "kitchen-1"


def episode(eid: str, game: str, task: str, turns: list[tuple[str, str]], won: bool, **kw) -> Episode:
    steps = [
        Step(observation=obs, admissible_actions=CANDIDATES, action=act, reason=f"{eid} reason {t}")
        for t, (obs, act) in enumerate(turns)
    ]
    steps[-1].done, steps[-1].reward = True, float(won)
    return Episode(episode_id=eid, game_id=game, split="train", task_type="pick_and_place", task=task,
                   steps=steps, won=won, **kw)


EP1 = episode("ep1", TRAIN_GAME, TASK, [("O0", FRIDGE), ("O1", OPEN), ("O2", PUT)], won=True)
EP2 = episode("ep2", TRAIN_GAME, TASK, [("O0", FRIDGE), ("O1", PUT)], won=True)
EP3 = episode("ep3", TRAIN_GAME, TASK, [("O0", DRAWER), ("O3", LOOK)], won=False)
EP4 = episode("ep4", TRAIN_GAME, TASK, [("O0", FRIDGE), ("O1", OPEN), ("O2", LOOK)], won=False, truncated=True)
EP5 = episode("ep5", TRAIN_GAME, TASK, [("O0", EXAMINE), ("O4", FRIDGE), ("O1", OPEN), ("O2", PUT)], won=True)
EP6 = episode("ep6", VAL_GAME, "heat an egg", [("V0", "go to microwave 1"), ("V1", "heat egg")], won=True)
EP7 = episode("ep7", VAL_GAME, "heat an egg", [("V0", "go to microwave 1")], won=False, failed="worker 3 hung")


def write(path: Path, episodes: list[Episode]) -> Path:
    with TrajectoryWriter(path, fsync=False) as w:
        for ep in episodes:
            w.write(ep)
    return path


@pytest.fixture()
def rollouts(tmp_path: Path) -> Path:
    d = tmp_path / "rollouts"
    write(d / "run1.jsonl", [EP1, EP6])
    write(d / "run2.jsonl", [EP2, EP3])
    write(d / "run3" / "part.jsonl", [EP4, EP5, EP7])
    return d


def build(rollouts: Path, out: Path, **kw) -> dict:
    kw = {"gamma": 0.5, "val_fraction": 0.5, "delta": 0.2, **kw}
    return build_targets(TargetsConfig(rollouts=[str(rollouts)], out=str(out), **kw))


def q_of(rows: list[dict], ep: Episode, t: int) -> tuple[float, int]:
    key = pair_key(contexts_from_episode(ep)[t], ep.steps[t].action)
    (row,) = [r for r in rows if r["key"] == key]
    return row["q"], row["visits"]


def test_games_land_in_the_expected_splits() -> None:
    assert split_of(TRAIN_GAME, 0.5) == "train" and split_of(VAL_GAME, 0.5) == "val"
    ids = [f"game-{i}" for i in range(2000)]
    share = sum(split_of(g, 0.1) == "val" for g in ids) / len(ids)
    assert 0.08 < share < 0.12
    assert [split_of(g, 0.1) for g in ids] == [split_of(g, 0.1) for g in ids]  # deterministic


def test_q_values_match_eq1_by_hand(rollouts: Path, tmp_path: Path) -> None:
    build(rollouts, tmp_path / "out")
    train = read_rows(tmp_path / "out" / "train.parquet")
    assert len(train) == 11
    assert q_of(train, EP1, 0) == (0.25, 3)  # fridge at s0: ep1, ep2 (another file), ep4 (a third)
    assert q_of(train, EP3, 0) == (0.0, 1)  # drawer
    assert q_of(train, EP5, 0) == (0.125, 1)  # examine
    assert q_of(train, EP1, 1) == (0.25, 2)  # open at s1: ep1 0.5, ep4 (truncated = loss) 0
    assert q_of(train, EP2, 1) == (1.0, 1)
    assert q_of(train, EP1, 2) == (1.0, 1) and q_of(train, EP4, 2) == (0.0, 1)
    assert q_of(train, EP5, 1) == (0.25, 1)  # same observation+action as ep1 t0 but other history
    assert q_of(train, EP5, 3) == (1.0, 1) and q_of(train, EP3, 1) == (0.0, 1)
    row = next(r for r in train if r["key"] == pair_key(contexts_from_episode(EP1)[2], PUT))
    assert row["t"] == 2 and row["game_id"] == TRAIN_GAME and row["admissible_actions"] == CANDIDATES
    assert row_to_context(row).history == contexts_from_episode(EP1)[2].history
    assert state_key(row_to_context(row)) == row["state_key"]


def test_split_by_game_and_failed_episodes_skipped(rollouts: Path, tmp_path: Path) -> None:
    summary = build(rollouts, tmp_path / "out")
    train = read_rows(tmp_path / "out" / "train.parquet")
    val = read_rows(tmp_path / "out" / "val.parquet")
    assert {r["game_id"] for r in train} == {TRAIN_GAME} and {r["split"] for r in train} == {"train"}
    assert {r["game_id"] for r in val} == {VAL_GAME}
    assert sorted((r["t"], r["q"], r["visits"]) for r in val) == [(0, 0.5, 1), (1, 1.0, 1)]  # no ep7
    assert summary["targets/episodes_read"] == 7 and summary["targets/episodes_failed_skipped"] == 1
    assert summary["targets/episodes_won"] == 4 and summary["targets/episodes_truncated"] == 1
    assert summary["targets/mean_q"] == pytest.approx((4.375 + 1.5) / 13)  # train Q̂ sum 4.375
    assert summary["targets/q_histogram"]["counts"] == [3, 1, 3, 0, 0, 2, 0, 0, 0, 4]
    assert summary["targets/q_histogram"]["edges"][:2] == pytest.approx([0.0, 0.1])
    assert "Eq. 1" in summary["note"]


def test_pairs_respect_delta(rollouts: Path, tmp_path: Path) -> None:
    summary = build(rollouts, tmp_path / "out")
    pairs = read_rows(tmp_path / "out" / "pairs_train.parquet")
    got = sorted((p["chosen"], p["rejected"], p["q_chosen"], p["q_rejected"]) for p in pairs)
    assert got == [(FRIDGE, DRAWER, 0.25, 0.0), (PUT, LOOK, 1.0, 0.0), (PUT, OPEN, 1.0, 0.25)]
    assert summary["targets/train/pairs"] == 3 and summary["targets/val/pairs"] == 0
    s0 = next(p for p in pairs if p["chosen"] == FRIDGE)
    assert s0["state_key"] == state_key(contexts_from_episode(EP1)[0]) and s0["visits_chosen"] == 3
    assert build(rollouts, tmp_path / "eq", delta=0.25)["targets/train/pairs"] == 3  # gap == δ kept
    assert build(rollouts, tmp_path / "hi", delta=0.26)["targets/train/pairs"] == 2


def test_same_file_twice_is_not_double_counted(rollouts: Path, tmp_path: Path) -> None:
    cfg = TargetsConfig(rollouts=[str(rollouts), str(rollouts / "run1.jsonl")], out=str(tmp_path / "o"),
                        gamma=0.5, val_fraction=0.5)
    build_targets(cfg)
    assert q_of(read_rows(tmp_path / "o" / "train.parquet"), EP1, 0) == (0.25, 3)


def test_history_window_shortens_rows_not_keys(rollouts: Path, tmp_path: Path) -> None:
    build(rollouts, tmp_path / "full")
    build(rollouts, tmp_path / "win", history_window=1)
    full = {r["key"]: r for r in read_rows(tmp_path / "full" / "train.parquet")}
    win = {r["key"]: r for r in read_rows(tmp_path / "win" / "train.parquet")}
    assert full.keys() == win.keys()
    last = pair_key(contexts_from_episode(EP5)[3], PUT)
    assert len(row_to_context(full[last]).history) == 3 and len(row_to_context(win[last]).history) == 1


def test_outputs_load_with_datasets(rollouts: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    build(rollouts, tmp_path / "out")
    files = {s: str(tmp_path / "out" / f"{s}.parquet") for s in ("train", "val")}
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
    assert ds["train"].num_rows == 11 and ds["val"].num_rows == 2
    assert ds["train"].features["admissible_actions"].feature.dtype == "string"
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic writes left nothing behind


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gamma"):
        build_targets(TargetsConfig(rollouts=["x"], out=str(tmp_path), gamma=1.5))


def test_representative_reason_hand_values() -> None:
    assert representative_reason(Counter({"b": 2, "a": 1, None: 1})) == "b"  # the most frequent
    assert representative_reason(Counter({"b": 1, "a": 1})) == "a"  # a tie: the smallest text
    assert representative_reason(Counter({"a": 1, None: 1})) is None  # no reason before any reason
    assert representative_reason(Counter({None: 3})) is None
    assert representative_reason(Counter()) is None


def test_rows_stay_keyed_on_the_action_and_carry_a_reason(rollouts: Path, tmp_path: Path) -> None:
    # every visit has its own reason ("ep1 reason 0", ...): still one row per (state, action), 11 train rows
    summary = build(rollouts, tmp_path / "out")
    assert summary["targets/train/rows"] == 11
    rows = read_rows(tmp_path / "out" / "train.parquet")
    (fridge,) = [r for r in rows if r["key"] == pair_key(contexts_from_episode(EP1)[0], FRIDGE)]
    assert (fridge["visits"], fridge["reason"]) == (3, "ep1 reason 0")  # ep1, ep2, ep4 tie: the smallest
    pairs = read_rows(tmp_path / "out" / "pairs_train.parquet")
    (s0,) = [p for p in pairs if p["rejected"] == DRAWER]
    assert (s0["reason_chosen"], s0["reason_rejected"]) == ("ep1 reason 0", "ep3 reason 0")
    # another file order, the same reasons
    d = tmp_path / "reversed"
    write(d / "a.jsonl", [EP5, EP4, EP3, EP2, EP1, EP6])
    build(d, tmp_path / "out2")
    assert read_rows(tmp_path / "out2" / "train.parquet") == rows
    # trajectories without reasons (constrained/score policies, experts): reason None
    bare = [ep.model_copy(deep=True) for ep in (EP1, EP3)]
    for ep in bare:
        for step in ep.steps:
            step.reason = None
    build(write(tmp_path / "bare.jsonl", bare), tmp_path / "out3")
    assert {r["reason"] for r in read_rows(tmp_path / "out3" / "train.parquet")} == {None}
