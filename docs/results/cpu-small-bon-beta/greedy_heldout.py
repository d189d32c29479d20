"""Greedy π_i of a run on the cpu-small loop's 60 held-out train games, as the loop plays it (`Run._greedy`,
eval.mode) under config overrides: here to check that score mode with the prefix cache gives the loop's own
held-out figure, and how long it takes. Prints wins per task type and the wall time.
usage: python greedy_heldout.py RUN_DIR I OUT_DIR [key=value ...]"""
import json
import sys
import time
from pathlib import Path

from agentprm.evaluation import summarize
from agentprm.loop import Run, load_config
from agentprm.rollout import make_jobs, run_rollouts


def main() -> None:
    run_dir, i, out, overrides = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
    cfg = load_config(f"{run_dir}/config.yaml", [f"run_dir={run_dir}", *overrides])
    run = Run(cfg, show=False)
    agent = run._greedy(i)
    t = time.time()
    eps = run_rollouts(agent, make_jobs(run.heldout_games(), 1, cfg.seed), out / "trajectories.jsonl",
                       workers=cfg.data.workers, max_steps=cfg.data.max_steps, max_in_flight=64, show_progress=False)
    s = summarize(eps)
    line = {"policy_id": agent.policy_id, "overrides": overrides, "won": s["eval/won"], "episodes": s["eval/episodes"],
            "per_task_type": {k: v["won"] for k, v in s["per_task_type"].items()}, "wall_s": round(time.time() - t, 1)}
    (out / "summary.json").write_text(json.dumps(line, indent=1))
    print(json.dumps(line))


if __name__ == "__main__":
    main()
