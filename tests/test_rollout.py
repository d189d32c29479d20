"""Rollouts: reset-distribution starts, the play loop on real games, and episodes lost to env faults
(replayed within the run, bounded; scripted faults for the edge cases, a killed worker on real games)."""

from __future__ import annotations

import multiprocessing
import os
import signal

from agentprm.agents.base import AgentOutput, ExpertAgent
from agentprm.envs.alfworld import ALFWorldEnv
from agentprm.envs.games import GameSpec, find_games
from agentprm.envs.pool import EnvPool
from agentprm.envs.scripted import make_faulty_env, scripted_game, scripted_solution
from agentprm.evaluation import summarize
from agentprm.rollout import Job, branch_jobs, make_jobs, play, reset_distribution_jobs, run_rollouts
from agentprm.trajectory import Episode, Step, read_episodes


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


# ----------------------------------------------------------------------------- same-state branches


def _episode(game: str, repeat: int, actions: list[str], prefix: tuple[str, ...] = (), failed: str | None = None):
    steps = [Step(observation=f"o{t}", admissible_actions=[a], action=a) for t, a in enumerate(actions)]
    return Episode(episode_id=Job(GameSpec(game, "train", "t", ""), repeat, prefix).episode_id, game_id=game,
                   split="train", task_type="t", task="", prefix=list(prefix), steps=steps, failed=failed)


def test_branch_jobs_replay_their_origin_up_to_a_turn_and_get_the_budget_it_had_left():
    games = {g: GameSpec(g, "train", "t", "") for g in ("a", "b", "c", "d")}
    eps = [_episode("a", 0, ["x0", "x1", "x2", "x3", "x4"]), _episode("b", 1, ["y0", "y1"], prefix=("p0",)),
           _episode("c", 0, ["z0"]),  # one turn: no turn 1..T-1 to branch from
           _episode("d", 0, ["w0", "w1", "w2"], failed="worker 0 crashed")]  # outcome unknown: not branched
    jobs = branch_jobs(eps, games, branches=2, seed=5, max_steps=30)
    assert jobs == branch_jobs(eps, games, branches=2, seed=5, max_steps=30)  # seeded
    assert [j.origin for j in jobs] == ["a#0", "a#0", "b@1#1", "b@1#1"] and [j.repeat for j in jobs] == [0, 1, 0, 1]
    a, b = jobs[0], jobs[2]
    t = len(a.prefix)
    assert 1 <= t <= 4 and a.prefix == ("x0", "x1", "x2", "x3", "x4")[:t] and a.max_steps == 30 - t
    assert b.prefix == ("p0", "y0") and b.max_steps == 29  # the origin's own prefix first; only y0 was its turn
    assert a.episode_id == f"a#0@{t}#0" and len({j.episode_id for j in jobs}) == 4
    assert [j.seed for j in jobs] == [5, 6, 5, 6]
    assert branch_jobs(eps, games, branches=2, seed=5, fraction=0.0) == []
    assert branch_jobs(eps, games, branches=0, seed=5) == []
    assert branch_jobs(eps, games, branches=1, seed=5, max_steps=1) == []  # no budget left after turn 1


def test_branches_start_at_their_origins_state_pool_with_it_and_stop_at_its_budget(alfworld_root, tmp_path):
    from agentprm.contexts import contexts_from_episode
    from agentprm.targets import TargetsConfig, aggregate, state_key

    game = find_games("valid_seen", ["pick_and_place_simple"])[0]
    wander = ["look", "inventory", "look", "inventory", "look", "inventory"]
    agent = ExpertAgent({game.game_id: wander})  # acts by turn index, so a branch repeats its origin's action
    [origin] = run_rollouts(agent, [Job(game, 0)], tmp_path / "t.jsonl", workers=0, max_steps=6, show_progress=False)
    assert origin.truncated and origin.num_steps == 6
    jobs = branch_jobs([origin], {game.game_id: game}, branches=2, seed=0, max_steps=6)
    branches = run_rollouts(agent, jobs, tmp_path / "b.jsonl", workers=0, max_steps=30, show_progress=False)
    t = len(jobs[0].prefix)
    for ep in branches:  # the env would allow 30 steps: the job's own budget cut each off where its origin was
        assert ep.truncated and not ep.won and ep.num_steps == 6 - t and ep.steps[-1].done
        assert ep.prefix == wander[:t] and ep.episode_id.startswith(f"{origin.episode_id}@{t}#")
        assert state_key(contexts_from_episode(ep)[0]) == state_key(contexts_from_episode(origin)[t])
    table = aggregate([origin, *branches], TargetsConfig(rollouts=["-"], out="-", val_fraction=0.0))
    assert max(len(v.returns) for v in table.values()) == 3  # turn t's state–action: the origin's and 2 branches'


# ----------------------------------------------------------------------------- env faults: retries


class _FaultyScriptedAgent:
    """Plays each scripted game's solution, but sends the game's magic command (crash/raise) at turn 0:
    every time for the games in `always`, the first time only for those in `once`."""

    policy_id = "scripted"

    def __init__(self, always: dict[str, str] | None = None, once: dict[str, str] | None = None):
        self.always, self.once = always or {}, dict(once or {})

    def act(self, contexts):
        outs = []
        for c in contexts:
            t = len(c.history)
            action = self.always.get(c.game_id) or (self.once.pop(c.game_id, None) if t == 0 else None)
            outs.append(AgentOutput(action or scripted_solution(c.game_id)[t]))
        return outs


def _play_scripted(agent, games: int, workers: int, retries: int = 2):
    got = {}
    with EnvPool(workers, make_faulty_env, timeout_s=30) as pool:
        play(agent, make_jobs([scripted_game(i) for i in range(games)]), pool,
             lambda ep: got.__setitem__(ep.game_id, ep), retries=retries)
        restarts = pool.num_restarts
    return got, restarts


def test_an_episode_whose_worker_crashed_is_replayed_from_its_start_and_wins():
    got, restarts = _play_scripted(_FaultyScriptedAgent(once={"scripted/0": "crash"}), games=2, workers=2)
    assert restarts == 1
    assert [(ep.won, ep.failed, ep.attempts) for ep in got.values()] == [(True, None, 1), (True, None, 2)]
    replayed = got["scripted/0"]
    assert [s.action for s in replayed.steps] == scripted_solution("scripted/0")  # nothing of the lost attempt


def test_retries_are_bounded_and_an_episode_failing_every_time_is_recorded_failed():
    always = {"scripted/0": "raise"}  # an engine error on every attempt (raise: only that episode fails)
    got, _ = _play_scripted(_FaultyScriptedAgent(always), games=2, workers=0)
    bad, good = got["scripted/0"], got["scripted/1"]
    assert (bad.won, bad.attempts, bad.steps) == (False, 3, [])  # 1 + 2 retries, the default
    assert bad.failed.startswith("RuntimeError: scripted failure in game scripted/0")
    assert (good.won, good.failed, good.attempts) == (True, None, 1)
    got, _ = _play_scripted(_FaultyScriptedAgent(always), games=1, workers=0, retries=0)
    assert got["scripted/0"].attempts == 1 and got["scripted/0"].failed


class _WorkerKiller:
    """An expert that SIGKILLs env worker 0 (a real process) just before its `at`-th turn, once."""

    def __init__(self, expert: ExpertAgent, at: int):
        self.expert, self.at, self.calls, self.killed = expert, at, 0, None
        self.policy_id = expert.policy_id

    def act(self, contexts):
        self.calls += 1
        if self.calls == self.at:
            (worker,) = [p for p in multiprocessing.active_children() if p.name == "envpool-0"]
            os.kill(worker.pid, signal.SIGKILL)
            worker.join(5)
            self.killed = worker.exitcode
        return self.expert.act(contexts)


def test_a_run_with_a_killed_worker_retries_its_episodes_and_reports_every_win(alfworld_root, tmp_path):
    games = [g for g in find_games("valid_seen", ["pick_and_place_simple"]) if len(ALFWorldEnv(g).walkthrough) >= 4][:3]
    plans = {g.game_id: ALFWorldEnv(g).walkthrough for g in games}
    agent = _WorkerKiller(ExpertAgent(plans), at=3)  # two turns in: every episode is in flight
    out = tmp_path / "t.jsonl"
    eps = run_rollouts(agent, make_jobs(games), out, workers=2, show_progress=False)
    assert agent.killed == -9
    assert [(ep.won, ep.failed, ep.num_steps) for ep in eps] == [(True, None, len(plans[g.game_id])) for g in games]
    assert [ep.attempts for ep in eps] == [2, 1, 2]  # worker 0 hosted the first and third game
    assert sorted(read_episodes(out), key=eps.index) == eps  # as written, in finishing order
    assert len(out.read_text().splitlines()) == 3  # the lost attempts left no records
    summary = summarize(eps)
    assert (summary["eval/won"], summary["eval/success"], summary["eval/failed"], summary["eval/retried"]) == (
        3, 1.0, 0, 2)


class _Counting(ExpertAgent):
    """An ExpertAgent that counts the turns it plays per game."""

    def __init__(self, plans):
        super().__init__(plans)
        self.turns: dict[str, int] = {}

    def act(self, contexts):
        for c in contexts:
            self.turns[c.game_id] = self.turns.get(c.game_id, 0) + 1
        return super().act(contexts)


def test_a_rerun_replays_failed_episodes_and_readers_see_one_record_per_id(alfworld_root, tmp_path):
    games = find_games("valid_seen", ["look_at_obj_in_light"])[:2]
    plans = {g.game_id: ALFWorldEnv(g).walkthrough for g in games}
    out, jobs = tmp_path / "t.jsonl", make_jobs(games)
    first, second = run_rollouts(ExpertAgent(plans), jobs, out, workers=0, show_progress=False)
    # what a run whose worker crashed on every attempt leaves for the second episode
    lost = second.model_copy(update={"won": False, "steps": second.steps[:1], "attempts": 3,
                                     "failed": "episode lost with worker 0: worker 0 crashed (exit code -9)"})
    out.write_text(first.to_json() + "\n" + lost.to_json() + "\n")
    agent = _Counting(plans)
    eps = run_rollouts(agent, jobs, out, workers=0, show_progress=False)
    assert agent.turns == {games[1].game_id: len(plans[games[1].game_id])}  # the failed one only, from its start
    assert eps == [first, second.model_copy(update={"attempts": 4})]
    assert len(out.read_text().splitlines()) == 3  # appended, the failed record kept on disk
    assert list(read_episodes(out)) == eps  # one record per id, the retry in the failed one's place
    assert summarize(eps)["eval/failed"] == 0
    again = _Counting(plans)
    assert run_rollouts(again, jobs, out, workers=0, show_progress=False) == eps and again.turns == {}


class _Silent:
    """A policy that answers nothing on its first two turns (the parser would send "look"), then "look"."""

    policy_id = "silent"

    def act(self, contexts):
        return [AgentOutput("look", raw_output="" if len(c.history) < 2 else "look", matched=False) for c in contexts]


def test_an_empty_answer_is_recorded_as_not_admissible(alfworld_root, tmp_path):
    game = find_games("valid_seen", ["pick_and_place_simple"])[:1]
    (ep,) = run_rollouts(_Silent(), make_jobs(game), tmp_path / "t.jsonl", workers=0, max_steps=4,
                         show_progress=False)
    assert [s.admissible for s in ep.steps] == [False, False, True, True]  # the game itself accepted "look"
    s = summarize([ep])
    assert s["eval/empty_answers"] == 2 and s["eval/non_admissible_rate"] == 0.5


def test_a_resumed_sampling_rollout_is_the_run_it_would_have_been(alfworld_root, tmp_path, tiny_model):
    """Sampled actions are seeded by episode and turn (agents.seeding): a run that stopped after two
    episodes and was resumed writes the same episodes as one uninterrupted run, although the resumed
    run batches the remaining episodes differently and its policy has made fewer calls."""
    from agentprm.agents.policy import LMPolicy, PolicyConfig

    games = find_games("valid_seen", ["pick_and_place_simple"])[:4]
    jobs = make_jobs(games, repeats=1, seed=5)

    def policy():
        return LMPolicy.from_spec(tiny_model, PolicyConfig(temperature=1.0, max_new_tokens=8, seed=9))

    whole = run_rollouts(policy(), jobs, tmp_path / "whole.jsonl", workers=0, max_steps=3, show_progress=False)
    lines = (tmp_path / "whole.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "cut.jsonl").write_text("".join(lines[:2]))  # killed after two episodes were written
    resumed = run_rollouts(policy(), jobs, tmp_path / "cut.jsonl", workers=0, max_steps=3, max_in_flight=1,
                           show_progress=False)
    assert [[s.raw_output for s in ep.steps] for ep in resumed] == [[s.raw_output for s in ep.steps] for ep in whole]
    assert len({s.raw_output for ep in whole for s in ep.steps}) > 1  # it really sampled
