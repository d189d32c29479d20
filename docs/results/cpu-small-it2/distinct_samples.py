"""How often the DPO step's 4 samples at a state differ, when π samples constrained (token by token at T 1, as
rollouts act) and in score mode (softmax(log π) over the admissible commands): the first 64 of the DPO step's own
shuffled states. usage (repository root): python distinct_samples.py POLICY TRAJECTORIES"""
import json
import sys

from agentprm.agents.policy import LMPolicy, PolicyConfig
from agentprm.models import resolve_model
from agentprm.train.dpo import load_states


def main() -> None:
    policy, trajectories = sys.argv[1], sys.argv[2]
    states = load_states([trajectories], 0)[:64]
    model, tokenizer = resolve_model(policy)  # one load, both ways of sampling (as the DPO step builds its sampler)
    for mode in ("constrained", "score"):
        pi = LMPolicy(model, tokenizer, PolicyConfig(mode=mode, temperature=1.0, max_new_tokens=24, history_window=None,
                                                     seed=0, batch_size=16, prefix_cache=False))
        kinds = [len({o.action for o in outs}) for outs in pi.sample(states, 4)]
        print(json.dumps({"mode": mode, "states": len(kinds), "with_2_or_more": sum(k >= 2 for k in kinds),
                          "mean_distinct": round(sum(kinds) / len(kinds), 2)}), flush=True)


if __name__ == "__main__":
    main()
