"""Agents: anything that maps a batch of turn contexts to actions (expert, LM policy, Best-of-N)."""

from agentprm.agents.base import Agent, AgentOutput

__all__ = ["Agent", "AgentOutput"]
