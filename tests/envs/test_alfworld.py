"""The real ALFWorld engine behind the TextEnv contract."""

from __future__ import annotations

import pytest

from agentprm.envs import check_env
from agentprm.envs.alfworld import ALFWorldEnv, split_intro
from agentprm.envs.games import TASK_TYPES, find_games, sample_games


def test_split_intro_separates_task_from_room():
    fb = "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in a room.\n\nYour task is to: put a cup in sink."
    assert split_intro(fb) == ("put a cup in sink.", "You are in a room.")


@pytest.mark.parametrize("split", ["train", "valid_seen"])
@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_walkthrough_wins_every_task_type(alfworld_root, split, task_type):
    game = sample_games(find_games(split, [task_type]), 1, seed=1)[0]
    env = ALFWorldEnv(game)
    obs = env.reset()
    assert obs.task and obs.admissible_actions
    plan = env.walkthrough
    for i, action in enumerate(plan):
        obs, reward, done, info = env.step(action)
        assert info["admissible"], f"walkthrough action {action!r} not admissible"
        if i < len(plan) - 1:
            assert (reward, done) == (0.0, False)
    assert (reward, done, info["won"], info["truncated"]) == (1.0, True, True, False)
    env.close()


def test_contract_prefix_bad_command_and_step_budget(alfworld_root):
    game = find_games("valid_seen", ["pick_and_place_simple"])[0]
    env = ALFWorldEnv(game, max_steps=3)
    check_env(env)
    plan = env.walkthrough

    obs = env.reset(prefix=plan[:2])
    assert obs.info["prefix_len"] == 2
    obs, reward, done, info = env.step("dance wildly")  # not admissible: engine answers, step counted
    assert obs.text == "Nothing happens." and not info["admissible"] and info["steps"] == 1 and not done
    env.step("look")
    obs, reward, done, info = env.step("look")  # third step: budget of 3 is spent
    assert done and info["truncated"] and not info["won"] and reward == 0.0
    with pytest.raises(RuntimeError):
        env.step("look")

    env.reset(prefix=plan[:-1])  # one action from the goal
    obs, reward, done, info = env.step(plan[-1])
    assert info["won"] and reward == 1.0
    env.close()
