"""RayEnvPool: the episodes of the process pool, and its failure handling, with Ray actors as workers.

One local Ray instance (2 CPUs, as CI machines have) serves the module: starting one takes seconds.
Edge cases run on scripted envs whose magic commands crash, hang or raise; equality with the process
pool and a killed actor mid-rollout run on real ALFWorld games.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from agentprm.agents.base import EnvExpertAgent, ExpertAgent
from agentprm.envs.alfworld import ALFWorldEnv
from agentprm.envs.games import GameSpec, find_games, sample_games
from agentprm.envs.pool import EpisodeFailure, EpisodeSpec
from agentprm.envs.protocol import Observation, StepResult
from agentprm.envs.ray_pool import RayEnvPool, local_game
from agentprm.envs.scripted import make_faulty_env, scripted_game
from agentprm.errors import ConfigError
from agentprm.evaluation import summarize
from agentprm.rollout import make_jobs, play, run_rollouts


def _need_ray():
    try:
        import ray
    except ImportError:
        msg = "ray is not installed: pip install 'agentprm[ray]' (scripts/setup.sh does)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return ray


@pytest.fixture(scope="module")
def local_ray():
    ray = _need_ray()
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()


def specs(slots):
    return [(i, EpisodeSpec(scripted_game(i))) for i in slots]


def ok(result) -> bool:
    return isinstance(result, Observation | StepResult)


def test_an_exception_a_crash_and_a_hang_fail_only_their_episodes(local_ray):
    with RayEnvPool(2, make_faulty_env, timeout_s=2) as pool:
        pool.reset(specs(range(4)))
        crashing = pool.worker_of(0)
        mate = next(s for s in range(1, 4) if pool.worker_of(s) == crashing)
        other = next(s for s in range(1, 4) if pool.worker_of(s) != crashing)
        raised = pool.step([(0, "raise"), (other, "look")])
        assert raised[0].error.startswith("RuntimeError: scripted failure") and ok(raised[other])
        crashed = pool.step([(0, "crash"), (other, "look")])
        assert crashed[0] == EpisodeFailure(f"worker {crashing} crashed (ActorDiedError)", crashed[0].traceback)
        assert ok(crashed[other]) and pool.num_restarts == 1
        assert pool.step([(mate, "look")])[mate].error == f"episode lost with worker {crashing}: {crashed[0].error}"
        hung = pool.step([(other, "hang")])[other]
        assert hung == EpisodeFailure(f"worker {1 - crashing} timed out after 2s") and pool.num_restarts == 2
        fresh = pool.reset(specs([10, 11]))
        assert {pool.worker_of(10), pool.worker_of(11)} == {0, 1} and all(ok(o) for o in fresh.values())
        assert all(ok(r) for r in pool.step([(10, "look"), (11, "look")]).values())


def test_more_workers_than_ray_cpus_is_a_clear_error(local_ray):
    with pytest.raises(ConfigError, match="3 env workers need one CPU each and the Ray cluster has 2"):
        RayEnvPool(3, make_faulty_env)


def test_actors_get_time_to_start_whatever_the_op_budget(local_ray):
    """Starting an actor (a new process importing the engine) takes longer than a 1 ms op budget: the start
    has its own allowance (it once failed the hang test above on a busy machine, with a 2 s budget)."""
    with RayEnvPool(1, make_faulty_env, timeout_s=0.001) as pool:  # before: "did not start within 0.001s"
        assert pool.num_workers == 1 and pool.timeout_s == 0.001
    with pytest.raises(ConfigError, match=r"1 env workers did not start on Ray within 0.001s \(cluster busy\?\)"):
        RayEnvPool(1, make_faulty_env, start_timeout_s=0.001)


def test_ray_rollouts_equal_process_rollouts_on_real_games(alfworld_root, local_ray, tmp_path):
    games = sample_games(find_games("valid_seen"), 3, seed=5)
    agent = EnvExpertAgent("handcoded", noise=0.3, seed=1)  # seeded random actions: the seed must carry over
    common = {"workers": 2, "max_steps": 8, "show_progress": False, "expert": "handcoded"}
    by_process = run_rollouts(agent, make_jobs(games), tmp_path / "process.jsonl", **common)
    by_ray = run_rollouts(agent, make_jobs(games), tmp_path / "ray.jsonl", backend="ray", **common)
    assert by_ray == by_process
    assert all(ep.failed is None and ep.attempts == 1 for ep in by_ray)
    assert any(s.action != s.expert_action for ep in by_ray for s in ep.steps)  # the noise did act
    assert 0.0 < summarize(by_ray)["eval/expert_agreement"] < 1.0  # where it acted, the expert's label differs


class _ActorKiller:
    """An expert that SIGKILLs the pool's actor 0 just before its `at`-th turn, once."""

    def __init__(self, expert: ExpertAgent, pool: RayEnvPool, at: int):
        self.expert, self.pool, self.at, self.calls = expert, pool, at, 0
        self.policy_id = expert.policy_id

    def act(self, contexts):
        self.calls += 1
        if self.calls == self.at:
            os.kill(self.pool.worker_pids[0], signal.SIGKILL)
        return self.expert.act(contexts)


def test_an_actor_killed_mid_rollout_loses_its_episodes_and_they_are_replayed(alfworld_root, local_ray):
    games = [g for g in find_games("valid_seen", ["pick_and_place_simple"]) if len(ALFWorldEnv(g).walkthrough) >= 4][:3]
    plans = {g.game_id: ALFWorldEnv(g).walkthrough for g in games}
    got = []
    with RayEnvPool(2, timeout_s=60) as pool:
        play(_ActorKiller(ExpertAgent(plans), pool, at=3), make_jobs(games), pool, got.append)
        assert pool.num_restarts == 1
    by_game = {ep.game_id: ep for ep in got}
    assert [(by_game[g.game_id].won, by_game[g.game_id].failed) for g in games] == [(True, None)] * 3
    assert [by_game[g.game_id].attempts for g in games] == [2, 1, 2]  # actor 0 hosted the first and third game


def test_a_game_missing_at_the_drivers_path_is_found_under_this_machines_data(alfworld_root):
    game = find_games("valid_seen")[0]
    elsewhere = GameSpec(game.game_id, game.split, game.task_type, "/home/someone-else/alfworld/" + game.game_id)
    assert local_game(EpisodeSpec(elsewhere)).game == game
    assert local_game(EpisodeSpec(game)).game == game
    assert local_game(EpisodeSpec(scripted_game(0))).game == scripted_game(0)  # no file behind it: left alone


def test_a_wrong_cluster_address_is_one_line_at_once(tmp_path):
    _need_ray()
    r = subprocess.run(["agentprm", "expert", "--games", "1", "--backend", "ray", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        "error: no Ray cluster answers at '127.0.0.1:1' (Connection refused): start one there with `ray start "
        "--head`, or fix --ray-address / RAY_ADDRESS (README: Scaling out)"]
