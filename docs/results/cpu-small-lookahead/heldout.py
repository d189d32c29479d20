"""π0 + Best-of-N (optionally + look-ahead K) with a given PRM on the cpu-small loop's 60 held-out train games.
usage (repository root): python docs/results/cpu-small-lookahead/heldout.py PRM N K OUT.jsonl (K = 0: plain
Best-of-N). Measured with PRM = /work/dev/prm-b4/model (runs/prm-b4/model in README), N = 4, K = 0 and 3."""
import json
import sys
import time
from collections import Counter
from pathlib import Path


def main():
    from agentprm.agents.best_of_n import BestOfNAgent
    from agentprm.agents.factory import with_lookahead
    from agentprm.loop import Run, load_config
    from agentprm.rollout import make_jobs, run_rollouts
    from agentprm.train.prm import PRM
    prm, n, k, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    cfg = load_config("configs/cpu-small.yaml")
    cfg.run_dir = "runs/cpu-small"
    run = Run(cfg, show=False)
    games = run.heldout_games()
    agent = BestOfNAgent(run._lm(run.policy_dir(0), 1.0), PRM.load(prm, device="cpu"), n)
    if k:
        agent = with_lookahead(agent, k, 0.95, games, 30)
    t = time.time()
    eps = run_rollouts(agent, make_jobs(games, 1, cfg.seed), out, workers=2, max_steps=30,
                       max_in_flight=64, show_progress=False)
    won, tot = Counter(), Counter()
    for e in eps:
        won[e.task_type[:10]] += e.won
        tot[e.task_type[:10]] += 1
    line = {"prm": prm, "n": n, "lookahead": k, "won": sum(won.values()), "episodes": len(eps),
            "by_type": {k2: f"{won[k2]}/{tot[k2]}" for k2 in tot}, "wall_s": round(time.time() - t)}
    print(json.dumps(line), flush=True)

if __name__ == "__main__":
    main()
