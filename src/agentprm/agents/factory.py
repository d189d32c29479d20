"""Build the agent a command line or a run config names: LM policy, Best-of-N with a PRM (optionally with a
look-ahead), or an API model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentprm.agents.base import Agent, EnvExpertAgent, ExpertAgent

DEMONSTRATORS = ("walkthrough", "handcoded", "planner")


def make_agent(
    policy: str, mode: str, temperature: float, top_p: float, max_new_tokens: int, history_window: int | None,
    seed: int, batch_size: int, prm: Path | None = None, best_of: int = 1, explore: bool = False,
    cpu_bf16: bool = False, bon_greedy: bool = False, bon_beta: float = 0.0,
) -> Agent:
    """The agent behind --policy (and --prm/--best-of): an LM policy, Best-of-N, or an API model.
    `cpu_bf16`: act under bf16 autocast on the CPU, as the loop does with `acting.cpu_bf16`, so that a
    policy the loop evaluated can be re-evaluated to the same figures."""
    if policy.startswith("openai:"):
        from agentprm.agents.openai_chat import agent_from_spec

        return agent_from_spec(policy, temperature=temperature, history_window=history_window)
    from agentprm.agents.policy import LMPolicy, PolicyConfig

    cfg = PolicyConfig(mode=mode, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                       history_window=history_window, explore=explore, seed=seed, batch_size=batch_size,
                       cpu_bf16=cpu_bf16)
    lm = LMPolicy.from_spec(policy, cfg)
    if prm is None or best_of <= 1:
        return lm
    from agentprm.agents.best_of_n import BestOfNAgent
    from agentprm.train.prm import PRM

    return BestOfNAgent(lm, PRM.load(str(prm)), best_of, greedy=lm.greedy() if bon_greedy else None, beta=bon_beta)


def with_lookahead(
    agent: Agent, depth: int, gamma: float, games: list[Any], max_steps: int, workers: int = 0
) -> Agent:
    """A Best-of-N agent (from `make_agent` with a PRM) wrapped in a `depth`-step look-ahead
    (agents.lookahead): its policy, greedy, plays the branches in spare envs run by `workers` processes
    (0: in this process). `games`: the games the agent will play (their files, by id)."""
    from agentprm.agents.best_of_n import BestOfNAgent
    from agentprm.agents.lookahead import LookaheadAgent
    from agentprm.agents.policy import LMPolicy
    from agentprm.envs.pool import EnvPool
    from agentprm.errors import ConfigError

    if not isinstance(agent, BestOfNAgent) or not isinstance(agent.policy, LMPolicy):
        raise ConfigError("--lookahead needs a local LM policy with --prm DIR and --best-of N (N >= 2)")
    greedy = agent.greedy if isinstance(agent.greedy, LMPolicy) else agent.policy.greedy()  # one twin (--bon-greedy)
    return LookaheadAgent(agent, greedy, EnvPool(workers), depth, gamma, max_steps,
                          {g.game_id: g for g in games})




def make_expert(
    kind: str, games: list[Any], noise: float = 0.0, seed: int = 0
) -> tuple[Agent, str | None, list[Any]]:
    """(agent, expert to run inside the env, the games it can play) for a demonstrator: "walkthrough"
    replays the game files' plans (a game whose file cannot be read is dropped with a warning);
    "handcoded" and "planner" act with the expert that runs beside the game (envs.experts), taking a
    random admissible action with probability `noise` (DART; the expert's label is kept)."""
    from agentprm.errors import ConfigError

    if kind == "walkthrough":
        if noise:
            raise ConfigError("noise needs an expert that can relabel the states it leads to: handcoded or planner")
        from agentprm.envs.alfworld import read_walkthroughs

        plans = read_walkthroughs(games)
        return ExpertAgent(plans), None, [g for g in games if g.game_id in plans]
    if kind not in DEMONSTRATORS:
        raise ConfigError(f"unknown expert {kind!r}; choose one of {', '.join(DEMONSTRATORS)}")
    return EnvExpertAgent(kind, noise, seed), kind, list(games)
