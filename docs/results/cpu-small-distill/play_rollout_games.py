"""Play the loop's iteration-1 rollout games (150 train games, the held-out ones excluded) once each, with
π0 greedy or with Best-of-4 + a K-step look-ahead judged by PRM_1, acting as the loop acts (constrained,
`acting.cpu_bf16`, 30 steps): the look-ahead is the would-be teacher of a distilled π1.
usage (repository root): python docs/results/cpu-small-distill/play_rollout_games.py RUN OUT [K [N]]
  RUN: a cpu-small run with pi0/ (and iter1/prm/ for K > 0); OUT: a folder (trajectories.jsonl, resumable);
  K: look-ahead depth (omitted or 0: π0 greedy); N: only N of the games, a stratified sample (seed 0)"""
import sys
import time
from pathlib import Path


def main() -> None:
    from agentprm.agents.factory import with_lookahead
    from agentprm.envs.games import stratified_games
    from agentprm.evaluation import summarize
    from agentprm.loop import Run, load_config
    from agentprm.rollout import make_jobs, run_rollouts

    run_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    depth = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    n = int(sys.argv[4]) if len(sys.argv) > 4 else None
    run = Run(load_config(run_dir / "config.yaml", [f"run_dir={run_dir}"]), show=False)  # a copied run reads itself
    games = run._games(run.cfg.data.train_split, run.cfg.data.rollout_games, salt=101)  # iteration 1's games
    if n is not None:
        games = stratified_games(games, n, seed=0)
    if not depth:
        agent = run._lm(str(run.policy_dir(0)), 0.0)
    else:
        bon = run._bon_agent(0, 4)  # the loop's Best-of-4 of π0 with PRM_1, samples at eval.bon_temperature (1.0)
        agent = with_lookahead(bon, depth, run.cfg.targets.gamma, games, run.cfg.data.max_steps, workers=2)
    t = time.time()
    out.mkdir(parents=True, exist_ok=True)
    eps = run_rollouts(agent, make_jobs(games, 1, run.cfg.seed), out / "trajectories.jsonl", workers=2,
                       max_steps=run.cfg.data.max_steps, max_in_flight=32 if depth else 64, show_progress=False)
    summary = summarize(eps)
    by_type = {k: f"{v['won']}/{v['episodes']}" for k, v in summary["per_task_type"].items()}
    print(f"{agent.policy_id}: {summary['eval/won']}/{len(eps)} won {by_type} {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
