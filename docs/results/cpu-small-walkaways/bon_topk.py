"""Prototype: Best-of-N whose candidates are the greedy answer plus the policy's K most likely admissible commands
(by log p of each admissible answer, as score mode ranks them), the PRM of iteration max(I, 1) picks (ties keep
greedy), on the cpu-small loop's 60 held-out train games. A prototype: measured once, not part of the package.
usage (repository root): python docs/results/cpu-small-walkaways/bon_topk.py RUN_DIR I K OUT_DIR"""
import sys
import time
from pathlib import Path

import torch

from agentprm.agents.base import AgentOutput
from agentprm.agents.best_of_n import BestOfNAgent, distinct
from agentprm.agents.policy import answers_logprobs, encode_answer, encode_prompt
from agentprm.evaluation import summarize
from agentprm.loop import Run, load_config
from agentprm.prompts import format_answer
from agentprm.rollout import make_jobs, run_rollouts


class TopKBoN(BestOfNAgent):
    def candidates(self, contexts, by_action=False):
        firsts = self.greedy.sample(contexts, 1)
        pol = self.greedy
        out = []
        for f, c in zip(firsts, contexts, strict=True):
            acts = c.admissible_actions or ["look"]
            with torch.no_grad():
                lps = answers_logprobs(pol.model, [encode_prompt(pol.tokenizer, pol.messages(c))],
                                       [[encode_answer(pol.tokenizer, format_answer(a)) for a in acts]],
                                       pol.tokenizer.pad_token_id).tolist()
            top = sorted(range(len(acts)), key=lambda j: -lps[j])[: self.n]
            out.append(distinct(f + [AgentOutput(acts[j], format_answer(acts[j]), None, lps[j]) for j in top],
                                lambda o: o.action))
        return out


def main() -> None:
    run_dir, i, k, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    cfg = load_config(f"{run_dir}/config.yaml")
    cfg.eval.bon_greedy = True
    run = Run(cfg, show=False)
    base = run._bon_agent(i, k)
    agent = TopKBoN(base.policy, base.prm, k, greedy=base.greedy)
    t = time.time()
    eps = run_rollouts(agent, make_jobs(run.heldout_games()), out / "trajectories.jsonl", workers=cfg.data.workers,
                       max_steps=cfg.data.max_steps, max_in_flight=64, show_progress=False)
    s = summarize(eps)
    per = {k: f"{v['won']}/{v['episodes']}" for k, v in s["per_task_type"].items()}
    print(f"pi{i} + PRM argmax over greedy + top-{k}: {s['eval/won']}/{s['eval/episodes']} won {per}"
          f" {time.time() - t:.0f}s")


if __name__ == "__main__":
    main()
