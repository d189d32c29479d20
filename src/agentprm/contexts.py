"""From recorded episodes (and stored rows) back to the `TurnContext` the agent saw at each turn.

One place rebuilds contexts so that the policy at rollout time, the SFT data, the PRM targets and
the PRM's prompts all agree on what "the state at turn t" is: the task, every earlier turn's
(observation, action), the current observation and the admissible actions (see
`agentprm.trajectory` for the turn semantics). Windowing the history is left to
`prompts.build_messages`, so callers keep the full history and choose the window at prompt time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from agentprm.prompts import Turn, TurnContext
from agentprm.trajectory import Episode


def prefix_history(ep: Episode) -> list[Turn]:
    """The replayed turns a reset-distribution episode starts with (empty for version-1 files, which
    did not record what was seen along the prefix)."""
    if len(ep.prefix_observations) != len(ep.prefix):
        return []
    return [Turn(o, a) for o, a in zip(ep.prefix_observations, ep.prefix, strict=True)]


def contexts_from_episode(ep: Episode) -> list[TurnContext]:
    """One context per step: what the agent could see before choosing `ep.steps[t].action`; the
    history starts with the replayed prefix turns, if any."""
    contexts: list[TurnContext] = []
    history: list[Turn] = prefix_history(ep)
    for step in ep.steps:
        contexts.append(
            TurnContext(
                task=ep.task,
                observation=step.observation,
                admissible_actions=list(step.admissible_actions),
                history=list(history),
                game_id=ep.game_id,
                prefix_len=len(ep.prefix),
                expert_action=step.expert_action,
            )
        )
        history.append(Turn(step.observation, step.action))
    return contexts


def history_to_json(history: Sequence[Turn]) -> str:
    """History as a JSON list of {"observation", "action"} objects (a parquet-friendly string)."""
    return json.dumps([{"observation": h.observation, "action": h.action} for h in history], ensure_ascii=False)


def history_from_json(text: str) -> list[Turn]:
    return [Turn(h["observation"], h["action"]) for h in json.loads(text)]
