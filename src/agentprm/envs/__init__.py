"""Environments: a tiny text-env protocol, ALFWorld behind it, and a process pool on top."""

from agentprm.envs.protocol import Observation, StepResult, TextEnv, check_env

__all__ = ["Observation", "StepResult", "TextEnv", "check_env"]
