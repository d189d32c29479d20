"""At each walk-away turn (where_lost.walkaway: the task's object in view, taking it admissible, the policy did
something else and never took it), how do a PRM and the policy itself rank "take <object>" among all admissible
actions? The PRM: its score of every admissible action; the policy: log p of every admissible answer (score mode).
usage (repository root): python docs/results/cpu-small-walkaways/rank_at_walkaways.py PRM POLICY TRAJECTORIES..."""
import json
import math
import sys
from pathlib import Path

import torch
from where_lost import target, walkaway

from agentprm.agents.policy import LMPolicy, PolicyConfig, answers_logprobs, encode_answer, encode_prompt
from agentprm.contexts import contexts_from_episode
from agentprm.prompts import format_answer
from agentprm.train.prm import PRM
from agentprm.trajectory import parse_episode


def rank(values: list[float], wanted: list[int]) -> int:
    """1-based rank of the best of `wanted` when the actions are sorted by `values`, highest first."""
    order = sorted(range(len(values)), key=lambda j: -values[j])
    return min(order.index(j) for j in wanted) + 1


def main() -> None:
    prm = PRM.load(sys.argv[1], device="cpu")
    pol = LMPolicy.from_spec(sys.argv[2], PolicyConfig(mode="score", temperature=0.0, history_window=None))
    for path in sys.argv[3:]:
        prm_rank, pol_rank, above = [], [], 0
        lines = Path(path).read_text().splitlines()
        for line in lines:
            ep = json.loads(line)
            if (t := walkaway(ep)) is None:
                continue
            ctx = contexts_from_episode(parse_episode(line))[t]
            acts, obj = ctx.admissible_actions, target(ep["task"])
            takes = [j for j, a in enumerate(acts) if a.startswith(f"take {obj} ")]
            chosen = acts.index(ep["steps"][t]["action"])
            q = prm.score([ctx] * len(acts), acts, batch_size=32)
            with torch.no_grad():
                lp = answers_logprobs(pol.model, [encode_prompt(pol.tokenizer, pol.messages(ctx))],
                                      [[encode_answer(pol.tokenizer, format_answer(a)) for a in acts]],
                                      pol.tokenizer.pad_token_id).tolist()

            above += max(q[j] for j in takes) > q[chosen]
            prm_rank.append((rank(q, takes), len(acts)))
            pol_rank.append((rank(lp, takes), round(max(math.exp(lp[j]) for j in takes), 3)))
        print(f"{path}: {len(prm_rank)} walk-away turns")
        print(f"  PRM scores 'take' above the policy's own action at {above}")
        print(f"  PRM rank of 'take' (rank, admissible actions): {sorted(prm_rank)}")
        print(f"  policy rank of 'take' (rank, probability): {sorted(pol_rank)}")


if __name__ == "__main__":
    main()
