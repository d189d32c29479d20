"""Best-of-N (π0 of a run + its PRM_1) on the cpu-small loop's 60 held-out train games, at a chosen sampling
temperature. usage: python bon_heldout.py RUN_DIR N TEMPERATURE OUT_DIR"""
import sys
import time
from collections import Counter
from pathlib import Path

from agentprm.loop import Run, load_config
from agentprm.rollout import make_jobs, run_rollouts


def main():
    run_dir, n, temp, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
    cfg = load_config(f"{run_dir}/config.yaml")
    cfg.eval.bon_temperature = temp
    run = Run(cfg, show=False)
    agent = run._bon_agent(0, n)
    t = time.time()
    eps = run_rollouts(agent, make_jobs(run.heldout_games()), out / "trajectories.jsonl", workers=2, max_steps=30,
                       max_in_flight=64, show_progress=False)
    won, tot = Counter(), Counter()
    for e in eps:
        won[e.task_type[:10]] += e.won
        tot[e.task_type[:10]] += 1
    print(f"BoN-{n} T={temp}: {sum(won.values())}/{len(eps)} won {dict((k, f'{won[k]}/{tot[k]}') for k in tot)} "
          f"{time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
