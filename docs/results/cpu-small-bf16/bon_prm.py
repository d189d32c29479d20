"""Best-of-N of a run's π_i judged by a PRM of one's choice (the loop's Best-of-N takes PRM_i, trained on π_{i-1}'s
rollouts), on the run's held-out train games or its valid_seen evaluation games, as the loop plays it otherwise
(`Run._bon_agent`: eval.bon_mode, bon_greedy, bon_beta, bon_temperature from the run's config or overrides).
N=1 plays greedy π_i (the PRM is then unused). Writes OUT_DIR/trajectories.jsonl (resumable) and summary.json.
usage: python bon_prm.py RUN_DIR I N PRM_DIR heldout|eval OUT_DIR [key=value ...]"""
import json
import sys
import time
from pathlib import Path

from agentprm.agents.best_of_n import BestOfNAgent
from agentprm.evaluation import summarize
from agentprm.loop import Run, load_config
from agentprm.rollout import make_jobs, run_rollouts
from agentprm.train.prm import PRM


def main() -> None:
    run_dir, i, n, prm, games, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], \
        Path(sys.argv[6])
    cfg = load_config(f"{run_dir}/config.yaml", [f"run_dir={run_dir}", *sys.argv[7:]])
    run, e = Run(cfg, show=False), cfg.eval
    if n == 1:
        agent = run._greedy(i)
    else:
        lm = run._lm(run.policy_dir(i), e.bon_temperature, mode=e.bon_mode)
        agent = BestOfNAgent(lm, PRM.load(prm, device=cfg.device), n, greedy=lm.greedy() if e.bon_greedy else None,
                             beta=e.bon_beta)
    jobs = make_jobs(run.heldout_games() if games == "heldout" else run._eval_games(), 1, cfg.seed)
    t = time.time()
    eps = run_rollouts(agent, jobs, out / "trajectories.jsonl", workers=cfg.data.workers,
                       max_steps=cfg.data.max_steps, max_in_flight=64, show_progress=False)
    s = summarize(eps)
    line = {"policy": run.policy_dir(i), "best_of": n, "prm": prm if n > 1 else None, "games": games,
            "overrides": sys.argv[7:], "won": s["eval/won"], "episodes": s["eval/episodes"],
            "per_task_type": {k: v["won"] for k, v in s["per_task_type"].items()},
            "wall_s": round(time.time() - t, 1)}
    (out / "summary.json").write_text(json.dumps(line, indent=1))
    print(json.dumps(line))


if __name__ == "__main__":
    main()
