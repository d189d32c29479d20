"""ALFWorld's own experts, run inside the environment: demonstrators and privileged teachers.

Two kinds ship with `alfworld` (facts measured on these game files: ../shared/ALFWORLD-EXPERTS.md):
- "handcoded": a scripted player that searches receptacles in order, as a person would (72 % on
  valid_seen from the start). Cloning it teaches search and recovery, which the game files'
  walkthroughs never show: they come from a planner that knows where every object is.
- "planner": the PDDL planner's plan from the *current* state, with full knowledge of the world. It
  replans from any state a learner reaches, which makes it a privileged teacher for DAgger-style
  relabelling, not a demonstrator to clone as is.

Both need the engine's state (facts, or the planner), so they run in the env worker, next to the
game; `ALFWorldEnv(expert=...)` puts the expert's next action in `Observation.info["expert_action"]`
(None when it has nothing admissible to say).

One repair to the handcoded expert, made here and nowhere else: its state tracking recognises a
placement by the word "put", but these (alfworld 0.4) game files spell it "move X to Y". Without the
repair it never empties its inventory after placing an object and fails nearly every two-object task
(2/24 on valid_seen); we tell it "put" whenever the command taken was a "move".
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from agentprm.envs.games import GameSpec

EXPERTS = ("handcoded", "planner")
HANDCODED_MAX_STEPS = 200


def task_params(game: GameSpec) -> dict[str, Any]:
    """The task parameters the handcoded expert plans with: from traj_data.json beside the game file
    when it exists, else from the task folder's name `{type}-{object}-{mrecep}-{parent}-{scene}`
    ("None" → ""; for look_at_obj_in_light the fourth field is the toggle target). This rule
    reproduces all 274 valid_seen/valid_unseen traj_data.json files."""
    traj = Path(game.path).parent / "traj_data.json"
    if traj.is_file():
        data = json.loads(traj.read_text())
        return {**data["pddl_params"], "task_type": data["task_type"]}
    task_type, obj, mrecep, fourth, _scene = Path(game.path).parent.parent.name.split("-")
    clean = {"None": ""}
    params = {"object_target": obj, "mrecep_target": clean.get(mrecep, mrecep), "object_sliced": False,
              "parent_target": clean.get(fourth, fourth), "toggle_target": "", "task_type": task_type}
    if task_type == "look_at_obj_in_light":
        params["toggle_target"], params["parent_target"] = params["parent_target"], ""
    return params


class HandcodedExpert:
    """alfworld's HandCodedTWAgent for one game, driven step by step as alfworld's AlfredExpert
    drives it: it observes the intro at reset (and suggests "look", as the original does), then
    suggests an action after every step. Its random choices are seeded per game and turn, so the
    same episode gives the same suggestions whatever the worker or the order of episodes."""

    def __init__(self, game: GameSpec):
        import alfworld.gen.constants as constants
        from alfworld.agents.expert import handcoded_expert

        self.game_id = game.game_id
        raw = task_params(game)
        self.params = {k: v.lower() if v in constants.OBJECTS else v for k, v in raw.items()}
        self._module = handcoded_expert
        self._rng = random.Random()
        self.policy: Any = None
        self.turn = 0

    def start(self, state: Any) -> str | None:
        from alfworld.agents.expert import HandCodedTWAgent

        policy_class = HandCodedTWAgent(max_steps=HANDCODED_MAX_STEPS).get_task_policy(self.params)
        self.policy = policy_class(self.params, max_steps=HANDCODED_MAX_STEPS)
        self.turn = 0
        self.policy.observe(state["feedback"])
        return "look"

    def after_step(self, state: Any, command: str) -> str | None:
        """The expert's next action after `command` was taken and `state` came back; the guard
        against repeating itself is HandCodedAgent.act's, applied to the command really taken."""
        self.turn += 1
        said = "put" + command[len("move") :] if command.startswith("move ") else command
        self._rng.seed(f"{self.game_id}:{self.turn}")
        self._module.random = self._rng  # the expert draws from its module's `random`
        admissible = list(state["admissible_commands"] or [])
        try:
            action = self.policy.act(state, said)
        except Exception:  # timeout, "failed", or a quirk on an unusual state: nothing to say
            return None
        if admissible and (action == command or (command == "look" and action not in admissible)):
            action = self._rng.choice(admissible)
        return action if action in admissible else None


def planner_action(state: Any) -> str | None:
    """First action of the planner's plan from the current state (requested with policy_commands)."""
    plan = state["policy_commands"] or []
    return plan[0] if plan else None
