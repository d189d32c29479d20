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
