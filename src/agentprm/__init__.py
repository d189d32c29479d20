"""agentprm: train LLM agents with process reward models (Choudhury, 2025, arXiv 2502.10325).

Data flows envs → rollout → targets → train (sft, prm, dpo) → agents (policy, best-of-N) → loop → cli.
"""

__version__ = "0.1.0"
