"""Diagnostic ceiling, not a method: greedy π0 with one hand rule on top, "take the task's object the first time
taking it is admissible". How many of π0's held-out losses are the walk-aways alone worth?
RUN_DIR: a cpu-small loop run (its π0 and config); the loop's 60 held-out train games, greedy, as the loop plays.
usage (repository root): python docs/results/cpu-small-walkaways/take_rule.py RUN_DIR OUT_DIR"""
import sys
import time
from pathlib import Path

from where_lost import target

from agentprm.agents.base import AgentOutput
from agentprm.evaluation import summarize
from agentprm.loop import Run, load_config
from agentprm.prompts import format_answer
from agentprm.rollout import make_jobs, run_rollouts


class TakeRule:
    def __init__(self, policy):
        self.policy, self.policy_id, self.overrides = policy, policy.policy_id + "+take-rule", 0

    def act(self, contexts):
        outs = self.policy.act(contexts)
        for k, c in enumerate(contexts):
            obj = target(c.task)
            takes = [a for a in c.admissible_actions if obj and a.startswith(f"take {obj} ")]
            if takes and not any(t.action.startswith(f"take {obj} ") for t in c.history) \
                    and outs[k].action not in takes:
                outs[k] = AgentOutput(takes[0], format_answer(takes[0]))
                self.overrides += 1
        return outs


def main() -> None:
    run_dir, out = sys.argv[1], Path(sys.argv[2])
    cfg = load_config(f"{run_dir}/config.yaml")
    run = Run(cfg, show=False)
    agent = TakeRule(run._lm(run.policy_dir(0), 0.0))
    t = time.time()
    eps = run_rollouts(agent, make_jobs(run.heldout_games()), out / "trajectories.jsonl", workers=cfg.data.workers,
                       max_steps=cfg.data.max_steps, max_in_flight=64, show_progress=False)
    s = summarize(eps)
    per = {k: f"{v['won']}/{v['episodes']}" for k, v in s["per_task_type"].items()}
    print(f"{agent.policy_id}: {s['eval/won']}/{s['eval/episodes']} won {per}, {agent.overrides} overrides,"
          f" {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
