"""Rollouts: reset-distribution starts and the play loop on real games."""

from __future__ import annotations

from agentprm.agents.base import ExpertAgent
from agentprm.envs.alfworld import ALFWorldEnv
from agentprm.envs.games import find_games
from agentprm.rollout import make_jobs, reset_distribution_jobs, run_rollouts


def test_reset_distribution_is_seeded_and_stays_inside_the_walkthrough(alfworld_root):
    games = find_games("valid_seen")[:6]
    plans = {g.game_id: ALFWorldEnv(g).walkthrough for g in games}
    jobs = reset_distribution_jobs(games, 3, seed=7, fraction=0.5, walkthroughs=plans)
    assert jobs == reset_distribution_jobs(games, 3, seed=7, fraction=0.5, walkthroughs=plans)
    assert len(jobs) == 18 and len({j.episode_id for j in jobs}) == 18
    started = [j for j in jobs if j.prefix]
    assert 0 < len(started) < 18
    for j in started:
        plan = plans[j.game.game_id]
        assert 1 <= len(j.prefix) < len(plan) and list(j.prefix) == plan[: len(j.prefix)]
    assert reset_distribution_jobs(games, 2, 7, 0.0, {}) == make_jobs(games, 2, 7)


def test_expert_from_reset_states_wins_with_the_rest_of_the_plan(alfworld_root, tmp_path):
    games = find_games("valid_seen", ["pick_and_place_simple"])[:2]
    plans = {g.game_id: ALFWorldEnv(g).walkthrough for g in games}
    jobs = reset_distribution_jobs(games, 1, seed=0, fraction=1.0, walkthroughs=plans)
    eps = run_rollouts(ExpertAgent(plans), jobs, tmp_path / "t.jsonl", workers=2, show_progress=False)
    for job, ep in zip(jobs, eps, strict=True):
        assert ep.won and ep.prefix == list(job.prefix)
        assert ep.num_steps == len(plans[ep.game_id]) - len(job.prefix)
        assert "@" in ep.episode_id


def test_reset_start_keeps_the_replayed_turns_as_history_and_pools_with_the_same_path(alfworld_root, tmp_path):
    from agentprm.contexts import contexts_from_episode
    from agentprm.rollout import Job
    from agentprm.targets import TargetsConfig, aggregate, state_key

    game = find_games("valid_seen", ["pick_and_place_simple"])[0]
    plan = ALFWorldEnv(game).walkthrough
    k = len(plan) - 1
    jobs = [Job(game, 0), Job(game, 0, tuple(plan[:k]))]  # from the start, and from k actions along it
    full, reset = run_rollouts(ExpertAgent({game.game_id: plan}), jobs, tmp_path / "t.jsonl", workers=0,
                               show_progress=False)
    assert reset.prefix == plan[:k] and len(reset.prefix_observations) == k
    on_path, started = contexts_from_episode(full)[k], contexts_from_episode(reset)[0]
    assert [(h.observation, h.action) for h in started.history] == [(h.observation, h.action) for h in on_path.history]
    assert state_key(started) == state_key(on_path)
    table = aggregate([full, reset], TargetsConfig(rollouts=["-"], out="-", val_fraction=0.0))
    assert max(len(v.returns) for v in table.values()) == 2  # the shared state–action got both visits


def test_different_prefixes_reaching_the_same_observation_stay_different_states(alfworld_root, tmp_path):
    from agentprm.contexts import contexts_from_episode
    from agentprm.rollout import Job
    from agentprm.targets import state_key

    game = find_games("valid_seen", ["pick_and_place_simple"])[0]
    places = [a for a in ALFWorldEnv(game).reset().admissible_actions if a.startswith("go to")]
    a, b, goal = places[0], places[1], places[2]
    jobs = [Job(game, 0, (a, goal)), Job(game, 1, (b, goal))]
    first, second = run_rollouts(ExpertAgent({game.game_id: ["look"] * 30}), jobs, tmp_path / "t.jsonl",
                                 workers=0, max_steps=1, show_progress=False)
    c1, c2 = contexts_from_episode(first)[0], contexts_from_episode(second)[0]
    assert c1.observation == c2.observation  # both arrived at the same place and see the same thing
    assert state_key(c1) != state_key(c2)  # but got there differently: not one state
