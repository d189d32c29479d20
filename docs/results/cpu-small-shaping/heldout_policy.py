"""A policy, greedy and constrained, on the cpu-small loop's 60 held-out train games (seed 0), as the loop
plays them. usage (repository root): python docs/results/cpu-small-shaping/heldout_policy.py POLICY OUT_DIR"""
import sys
import time
from collections import Counter
from pathlib import Path


def main():
    from agentprm.loop import Run, load_config
    from agentprm.rollout import make_jobs, run_rollouts

    run = Run(load_config("configs/cpu-small.yaml"), show=False)
    games = run.heldout_games()
    pol = run._lm(sys.argv[1], 0.0)  # the loop's own greedy acting config (constrained, bf16 autocast)
    t = time.time()
    eps = run_rollouts(pol, make_jobs(games), Path(sys.argv[2]), workers=2, max_steps=30, max_in_flight=64,
                       show_progress=False)
    won, tot = Counter(), Counter()
    for e in eps:
        won[e.task_type[:10]] += e.won
        tot[e.task_type[:10]] += 1
    by_type = {k: f"{won[k]}/{tot[k]}" for k in tot}
    print(f"{sys.argv[1]}: {sum(won.values())}/{len(eps)} won {by_type} {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
