"""Game discovery: splits, task types, deterministic order, seeded sampling, other split names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentprm.envs.games import (
    TASK_TYPES,
    count_by_task_type,
    find_games,
    resolve_game,
    sample_games,
    stratified_games,
)
from agentprm.errors import DataNotFoundError


def test_counts_match_the_data_card(alfworld_root):
    # numbers from ../shared/alfworld/SOURCE.md
    assert len(find_games("train")) == 3553
    vs = find_games("valid_seen")
    assert len(vs) == 140
    assert count_by_task_type(vs)["pick_and_place_simple"] == 35
    assert count_by_task_type(find_games("train"))["pick_two_obj_and_place"] == 813


def test_order_filter_and_sampling_are_deterministic(alfworld_root):
    games = find_games("valid_seen")
    assert [g.game_id for g in games] == sorted(g.game_id for g in games)
    looks = find_games("valid_seen", ["look_at_obj_in_light"])
    assert len(looks) == 13 and {g.task_type for g in looks} == {"look_at_obj_in_light"}
    a, b, c = sample_games(games, 10, 3), sample_games(games, 10, 3), sample_games(games, 10, 4)
    assert a == b and a != c and len(a) == 10
    strat = stratified_games(games, 12, 0)
    assert set(count_by_task_type(strat).values()) == {2}
    assert resolve_game(games[5].game_id) == games[5]
    assert resolve_game(games[5].path).game_id == games[5].game_id


def test_valid_unseen_layout_is_supported(alfworld_root, tmp_path, monkeypatch):
    """valid_unseen is not available here; lay valid_seen out under that name and find it."""
    (tmp_path / "json_2.1.1").mkdir()
    os.symlink(alfworld_root / "json_2.1.1" / "valid_seen", tmp_path / "json_2.1.1" / "valid_unseen")
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    games = find_games("valid_unseen")
    assert len(games) == 140 and all(g.game_id.startswith("valid_unseen/") for g in games)


def test_missing_data_and_bad_names_raise_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataNotFoundError, match="ALFWORLD_DATA"):
        find_games("train")
    with pytest.raises(DataNotFoundError, match="unknown split"):
        find_games("test")
    with pytest.raises(DataNotFoundError, match="unknown task type"):
        find_games("train", ["pick_and_fly"])
    assert len(TASK_TYPES) == 6


def test_damaged_game_files_cost_one_game_each(alfworld_root, tmp_path, monkeypatch):
    """An empty game file is skipped when games are listed; one with bytes that are not UTF-8 is
    dropped (with a warning) by the walkthrough reader instead of aborting the whole command."""
    import shutil

    from agentprm.agents.factory import make_expert

    src = find_games("valid_seen")[:3]
    for g in src:
        dest = tmp_path / "json_2.1.1" / "valid_seen" / Path(g.path).parent.parent.name / Path(g.path).parent.name
        dest.mkdir(parents=True)
        shutil.copy(g.path, dest / "game.tw-pddl")
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    copies = sorted(tmp_path.glob("json_2.1.1/valid_seen/*/*/game.tw-pddl"))
    copies[0].write_bytes(b"")
    copies[1].write_bytes(b'{"walkthrough": ["go to caf\xe9"]}')
    with pytest.warns(UserWarning, match="skipping empty game file"):
        games = find_games("valid_seen")
    assert len(games) == 2
    with pytest.warns(UserWarning, match="skipping game valid_seen/.*utf-8"):
        agent, in_env, playable = make_expert("walkthrough", games)
    assert in_env is None and [g.path for g in playable] == [str(copies[2])]
    assert list(agent.plans) == [playable[0].game_id]


def test_eval_cli_and_run_loop_pick_the_same_balanced_games(alfworld_root):
    """`--games 12` is balanced over the six task types (2 of each, though valid_seen has 35 Pick games) and
    is the loop's evaluation set for eval_games: 12 at the same seed."""
    from agentprm.cli.episodes import select_games
    from agentprm.loop import Run, RunConfig

    picked = select_games("valid_seen", 12, None, 3)
    assert sorted(count_by_task_type(picked).values()) == [2] * 6
    run = Run(RunConfig.model_validate({"seed": 3, "data": {"eval_games": 12}}), show=False)
    assert run._eval_games() == picked
    assert select_games("valid_seen", None, None, 3) == find_games("valid_seen")
