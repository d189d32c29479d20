"""Best-of-N (π_i of a run + the PRM of its iteration) on the cpu-small loop's 60 held-out train games, with or
without the policy's greedy answer among the N candidates (eval.bon_greedy). The loop's own Best-of-N agent
(`Run._bon_agent`), the loop's held-out games and step budget.
usage: python bon_heldout.py RUN_DIR I N TEMPERATURE GREEDY(0|1) OUT_DIR"""
import sys
import time
from pathlib import Path

from agentprm.evaluation import summarize
from agentprm.loop import Run, load_config
from agentprm.rollout import make_jobs, run_rollouts


def main() -> None:
    run_dir, i, n, temp, greedy, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), \
        sys.argv[5] == "1", Path(sys.argv[6])
    cfg = load_config(f"{run_dir}/config.yaml")
    cfg.eval.bon_temperature, cfg.eval.bon_greedy = temp, greedy
    run = Run(cfg, show=False)
    agent = run._bon_agent(i, n)
    t = time.time()
    eps = run_rollouts(agent, make_jobs(run.heldout_games()), out / "trajectories.jsonl", workers=cfg.data.workers,
                       max_steps=cfg.data.max_steps, max_in_flight=64, show_progress=False)
    s = summarize(eps)
    per = {k: f"{v['won']}/{v['episodes']}" for k, v in s["per_task_type"].items()}
    print(f"{agent.policy_id} T={temp}: {s['eval/won']}/{s['eval/episodes']} won {per} {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
