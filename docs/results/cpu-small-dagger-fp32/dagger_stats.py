"""Where do the learner's disagreements with the expert fall: won vs lost episodes, before vs after its first
repeated (observation, action)?"""
import sys
from collections import Counter

from agentprm.train.sft import first_repeat
from agentprm.trajectory import load_episodes

eps = load_episodes([sys.argv[1]])
c = Counter()
for ep in eps:
    first_rep = first_repeat(ep)  # what SFT's relabel_from=first_repeat counts from
    dis = [t for t, s in enumerate(ep.steps) if s.expert_action and s.expert_action != s.action]
    lab = sum(1 for s in ep.steps if s.expert_action)
    w = "won" if ep.won else "lost"
    c[f"{w} episodes"] += 1
    c[f"{w} labelled turns"] += lab
    c[f"{w} turns"] += len(ep.steps)
    c[f"{w} disagreements"] += len(dis)
    c[f"{w} first-4 disagreements"] += min(4, len(dis))
    c[f"{w} with a repeat"] += first_rep is not None
    if first_rep is not None:
        c[f"{w} disagreements at/after first repeat"] += sum(t >= first_rep for t in dis)
        c[f"{w} first-4 disagreements at/after first repeat"] += sum(t >= first_rep for t in dis[:4])
for k in sorted(c):
    print(f"{k:50s} {c[k]}")
