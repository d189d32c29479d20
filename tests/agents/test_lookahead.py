"""The look-ahead agent: its choice rule by hand, on scripted games (fast), and replays on real ALFWorld."""

from __future__ import annotations

import pytest

from agentprm.agents.base import AgentOutput
from agentprm.agents.best_of_n import BestOfNAgent
from agentprm.agents.lookahead import LookaheadAgent, Outcome, lookahead_choice, lookahead_value
from agentprm.envs.alfworld import ALFWorldEnv
from agentprm.envs.games import find_games
from agentprm.envs.pool import EnvPool, EpisodeSpec
from agentprm.envs.scripted import DISTRACTORS, ScriptedEnv, make_scripted_env, scripted_game, scripted_solution
from agentprm.evaluation import summarize
from agentprm.prompts import Turn, TurnContext
from agentprm.rollout import make_jobs, play

# ----------------------------------------------------------------------------- the choice rule


def test_a_winning_lookahead_beats_any_prm_value_and_values_discount_by_depth():
    assert lookahead_value(Outcome(3, won=True)) == 1.0
    assert lookahead_value(Outcome(2, ended=True, prm_value=0.9)) == 0.0
    assert lookahead_value(Outcome(1, prm_value=0.6)) == 0.6  # one step: the PRM at the current state
    assert lookahead_value(Outcome(3, prm_value=0.8), gamma=0.5) == pytest.approx(0.2)  # 0.5^2 * 0.8
    # a saturated PRM value (1.0, one step) still loses to a branch that actually won
    assert lookahead_choice([Outcome(1, prm_value=1.0), Outcome(4, won=True)]) == 1
    # 0.8 * 0.95^2 = 0.722 < 0.75: the deeper branch's higher value loses to its discount
    assert lookahead_choice([Outcome(3, prm_value=0.8), Outcome(1, prm_value=0.75)]) == 1
    assert lookahead_choice([Outcome(3, prm_value=0.8), Outcome(1, prm_value=0.7)]) == 0
    # a branch that ran out of the episode's steps is a loss, however the PRM liked its last pair
    assert lookahead_choice([Outcome(2, ended=True, prm_value=0.99), Outcome(2, prm_value=0.1)]) == 1


def test_ties_keep_the_first_candidate():
    assert lookahead_choice([Outcome(2, prm_value=0.5), Outcome(2, prm_value=0.5)]) == 0
    assert lookahead_choice([Outcome(1, ended=True), Outcome(3, ended=True)]) == 0
    assert lookahead_choice([Outcome(1, prm_value=0.2), Outcome(3, won=True), Outcome(1, won=True)]) == 1


# ----------------------------------------------------------------------------- scripted games


class ListSampler:
    """Samples the same answers at every turn, in this order."""

    policy_id = "list"

    def __init__(self, actions: list[str]):
        self.actions = actions

    def sample(self, contexts, n):
        return [[AgentOutput(a, f"ACTION: {a}") for a in self.actions] for _ in contexts]


class TableScorer:
    def __init__(self, table: dict[str, float], default: float = 0.5):
        self.table, self.default, self.calls = table, default, []

    def answer(self, action, reason=None):
        return f"ACTION: {action}"

    def score(self, contexts, actions, batch_size=16, reasons=None):
        self.calls.append(list(actions))
        return [self.table.get(a, self.default) for a in actions]


class SolvingPolicy:
    """A greedy policy that knows scripted games: the one admissible command that is not a distractor."""

    policy_id = "solver"

    def act(self, contexts):
        return [AgentOutput(next((a for a in c.admissible_actions if a not in DISTRACTORS), "look"))
                for c in contexts]


GAME = scripted_game(0)
SOLUTION = scripted_solution(GAME.game_id)


def start_context(key: str = "ep0/0") -> TurnContext:
    obs = ScriptedEnv(SOLUTION, game_id=GAME.game_id).reset()
    return TurnContext(obs.task, obs.text, obs.admissible_actions, game_id=GAME.game_id, episode_key=key)


def lookahead_agent(depth: int, max_steps: int | None = None, prm: TableScorer | None = None) -> LookaheadAgent:
    bon = BestOfNAgent(ListSampler(["look", SOLUTION[0], "look"]), prm or TableScorer({"look": 0.9}), n=3)
    return LookaheadAgent(bon, SolvingPolicy(), EnvPool(0, make_scripted_env), depth, 0.95, max_steps,
                          {GAME.game_id: GAME})


def test_the_lookahead_takes_the_move_whose_branch_wins_over_the_prm_favourite():
    assert len(SOLUTION) >= 2  # the right move alone does not win: only the look-ahead can see it
    prm = TableScorer({"look": 0.9, SOLUTION[0]: 0.1})
    agent = lookahead_agent(len(SOLUTION), prm=prm)
    out = agent.act([start_context()])[0]
    assert out.action == SOLUTION[0]
    look, right = agent.last_outcomes[0]
    assert right.won and right.steps == len(SOLUTION) and not look.won and look.steps == len(SOLUTION)
    assert out.stats["lookahead/branches"] == 2 and out.stats["lookahead/branch_wins"] == 1
    assert out.stats["lookahead/replayed_steps"] == 0  # turn 0: nothing to replay
    assert out.stats["lookahead/extra_env_steps"] == out.stats["lookahead/simulated_steps"] == 2 * len(SOLUTION)
    agent.close()


def test_depth_one_is_best_of_n_and_a_branch_past_the_step_budget_counts_as_lost():
    prm = TableScorer({"look": 0.9, SOLUTION[0]: 0.1})
    agent = lookahead_agent(1, prm=prm)
    assert agent.act([start_context()])[0].action == "look"  # the PRM's pick, as Best-of-N would
    # the win is len(SOLUTION) steps away but the episode has one fewer left: nobody can win, both are 0
    agent = lookahead_agent(len(SOLUTION) + 2, max_steps=len(SOLUTION) - 1, prm=prm)
    assert agent.act([start_context()])[0].action == "look"
    assert all(o.ended and lookahead_value(o) == 0.0 for o in agent.last_outcomes[0])
    agent = lookahead_agent(len(SOLUTION) + 2, max_steps=len(SOLUTION), prm=prm)  # just enough steps
    assert agent.act([start_context()])[0].action == SOLUTION[0]


def test_replay_reaches_the_agents_state_and_a_mismatch_falls_back_to_the_prm():
    prm = TableScorer({"look": 0.9, SOLUTION[0]: 0.1, SOLUTION[1]: 0.0})
    agent = lookahead_agent(len(SOLUTION) - 1, prm=prm)  # wins only from the replayed state, not from the start
    env = ScriptedEnv(SOLUTION, game_id=GAME.game_id)
    first = env.reset()
    after = env.step(SOLUTION[0]).observation  # one turn in: the replay must reproduce this state
    ctx = TurnContext(after.task, after.text, after.admissible_actions, [Turn(first.text, SOLUTION[0])],
                      GAME.game_id, episode_key="ep0/0")
    agent.bon.policy = ListSampler(["look", SOLUTION[1]])
    out = agent.act([ctx])[0]
    assert out.action == SOLUTION[1] and out.stats["lookahead/replayed_steps"] == 2  # one action, per branch
    assert out.stats["lookahead/fallbacks"] == 0
    wrong = TurnContext(after.task, "You are somewhere else.", after.admissible_actions, ctx.history,
                        GAME.game_id, episode_key="ep1/0")
    out = agent.act([wrong])[0]
    assert out.action == "look" and out.stats["lookahead/fallbacks"] == 2  # the PRM's pick at the state itself
    assert out.stats["lookahead/simulated_steps"] == 0


def test_one_distinct_candidate_simulates_nothing():
    bon = BestOfNAgent(ListSampler(["look", "look"]), TableScorer({}), n=2)
    agent = LookaheadAgent(bon, SolvingPolicy(), EnvPool(0, make_scripted_env), 3, games={GAME.game_id: GAME})
    out = agent.act([start_context()])[0]
    assert out.action == "look" and out.stats["lookahead/extra_env_steps"] == out.stats["lookahead/branches"] == 0


def test_episodes_keep_their_lookahead_stats_and_the_summary_sums_them():
    """Through `play`: every episode carries its turns' counters (meta), summarize adds them up, and
    finished episodes' spare envs are released."""
    games = [scripted_game(i) for i in range(3)]
    bon = BestOfNAgent(ListSampler(["look", "inventory"]), TableScorer({"look": 0.4}), n=2)
    agent = LookaheadAgent(bon, SolvingPolicy(), EnvPool(0, make_scripted_env), 2, max_steps=4,
                           games={g.game_id: g for g in games})
    episodes = []
    with EnvPool(0, make_scripted_env) as pool:
        play(agent, make_jobs(games), pool, episodes.append, max_steps=4, max_in_flight=2)
    assert len(episodes) == 3 and not any(ep.won for ep in episodes)
    # each turn: 2 branches replay the t turns so far and simulate min(2, steps left) steps each
    per_episode = sum(2 * t + 2 * min(2, 4 - t) for t in range(4))
    for ep in episodes:
        assert ep.meta["agent_stats"]["lookahead/extra_env_steps"] == per_episode
        assert ep.meta["agent_stats"]["lookahead/branches"] == 2 * 4
    summary = summarize(episodes)
    assert summary["lookahead/extra_env_steps"] == 3 * per_episode
    assert summary["lookahead/extra_env_steps_per_turn"] == per_episode / 4
    agent.act([start_context("other")])  # the three finished episodes' spare envs are given back
    assert {key for key, _ in agent._slots} == {"other"}
    agent.close()


# ----------------------------------------------------------------------------- real ALFWorld


def test_alfworld_replays_a_prefix_to_the_same_state_in_a_spare_env(alfworld_root):
    game = find_games("valid_seen", ["pick_clean_then_place_in_recep"])[0]
    main = ALFWorldEnv(game)
    plan = main.walkthrough
    k = len(plan) // 2
    obs = main.reset()
    history = []
    for action in plan[:k]:
        history.append(Turn(obs.text, action))
        obs = main.step(action).observation
    with EnvPool(0) as pool:  # a spare env, as the agent owns it: reset cold, then warm after other play
        spec = EpisodeSpec(game, tuple(plan[:k]))
        for _ in range(2):
            spare = pool.reset([(0, spec)])[0]
            assert (spare.text, spare.admissible_actions) == (obs.text, obs.admissible_actions)
            assert [tuple(t) for t in spare.info["prefix_turns"]] == [(t.observation, t.action) for t in history]
            pool.step([(0, "look")])  # wander off; the next reset must not remember it
        pool.reset([(0, spec)])
        nxt = pool.step([(0, plan[k])])[0]
    assert nxt.observation.text == main.step(plan[k]).observation.text
    main.close()


def test_lookahead_on_a_real_game_finds_the_walkthroughs_win(alfworld_root):
    """Halfway through a game, the PRM prefers "look"; the look-ahead, rolled by a policy that follows
    the walkthrough, sees the next walkthrough action win."""
    game = find_games("valid_seen", ["pick_and_place_simple"])[0]
    env = ALFWorldEnv(game)
    plan = env.walkthrough
    k = len(plan) - 3
    obs = env.reset()
    history = []
    for action in plan[:k]:
        history.append(Turn(obs.text, action))
        obs = env.step(action).observation
    env.close()

    class WalkthroughPolicy:
        policy_id = "walkthrough"

        def act(self, contexts):
            return [AgentOutput(plan[len(c.history)]) for c in contexts]

    bon = BestOfNAgent(ListSampler(["look", plan[k]]), TableScorer({"look": 0.9, plan[k]: 0.2}), n=2)
    agent = LookaheadAgent(bon, WalkthroughPolicy(), EnvPool(0), depth=3, max_steps=30, games={game.game_id: game})
    ctx = TurnContext(obs.task, obs.text, obs.admissible_actions, history, game.game_id, episode_key="e/0")
    out = agent.act([ctx])[0]
    assert out.action == plan[k] and agent.last_outcomes[0][1].won and agent.last_outcomes[0][1].steps == 3
    assert out.stats["lookahead/fallbacks"] == 0 and out.stats["lookahead/replayed_steps"] == 2 * k
    agent.close()
