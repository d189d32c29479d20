"""Best-of-N of a run's π_i with the PRM of its iteration on the cpu-small loop's 60 held-out train games, as the
loop plays it (`Run._bon_agent`) under config overrides (eval.bon_beta, eval.bon_mode, eval.bon_greedy, ...).
Prints the wins per task type, the wall time and how often each command verb was played.
usage: python bon_heldout.py RUN_DIR I N OUT_DIR [key=value ...]"""
import collections
import json
import sys
import time
from pathlib import Path

from agentprm.evaluation import summarize
from agentprm.loop import Run, load_config
from agentprm.rollout import make_jobs, run_rollouts


def main() -> None:
    run_dir, i, n, out, overrides = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), sys.argv[5:]
    cfg = load_config(f"{run_dir}/config.yaml", [f"run_dir={run_dir}", *overrides])
    run = Run(cfg, show=False)
    agent = run._bon_agent(i, n)
    t = time.time()
    eps = run_rollouts(agent, make_jobs(run.heldout_games(), 1, cfg.seed), out / "trajectories.jsonl",
                       workers=cfg.data.workers, max_steps=cfg.data.max_steps, max_in_flight=64, show_progress=False)
    wall = time.time() - t
    s = summarize(eps)
    verbs = collections.Counter(st.action.split()[0] for ep in eps for st in ep.steps if st.action)
    per = {k: v["won"] for k, v in s["per_task_type"].items()}
    line = {"policy_id": agent.policy_id, "overrides": overrides, "won": s["eval/won"], "episodes": s["eval/episodes"],
            "per_task_type": per, "wall_s": round(wall, 1), "verbs": dict(verbs.most_common())}
    (out / "summary.json").write_text(json.dumps(line, indent=1))
    print(json.dumps(line))


if __name__ == "__main__":
    main()
