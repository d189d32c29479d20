"""π_I of a cpu-small loop run, greedy, on the loop's 60 held-out train games, acting in a given policy mode
(constrained: token-by-token decoding restricted to admissible commands, as the loop acts; score: the admissible
command whose answer has the highest log-likelihood).
usage (repository root): python docs/results/cpu-small-walkaways/heldout_mode.py RUN_DIR MODE OUT_DIR [I]"""
import sys
import time
from pathlib import Path

from agentprm.evaluation import summarize
from agentprm.loop import Run, load_config
from agentprm.rollout import make_jobs, run_rollouts


def main() -> None:
    run_dir, mode, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    i = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    cfg = load_config(f"{run_dir}/config.yaml")
    cfg.policy_args.mode = mode
    run = Run(cfg, show=False)
    pol = run._lm(run.policy_dir(i), 0.0)
    t = time.time()
    eps = run_rollouts(pol, make_jobs(run.heldout_games()), out / "trajectories.jsonl", workers=cfg.data.workers,
                       max_steps=cfg.data.max_steps, max_in_flight=64, show_progress=False)
    s = summarize(eps)
    per = {k: f"{v['won']}/{v['episodes']}" for k, v in s["per_task_type"].items()}
    print(f"pi{i} {mode}: {s['eval/won']}/{s['eval/episodes']} won {per} {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
