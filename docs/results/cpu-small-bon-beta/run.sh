#!/usr/bin/env bash
# Best-of-N with a KL-regularised choice (eval.bon_beta: the candidate with the highest Q + beta·log π) and its
# candidates drawn in score mode (eval.bon_mode=score: greedy = the likeliest admissible command, samples drawn from
# softmax(log π) over the admissible commands), on the cpu-small loop's 60 held-out train games. Run from the
# repository root on the idle 2-core CPU. I: the score-mode run of one iteration from the fp32 π0 (its iter1/policy
# is π1, iter1/prm PRM_1; README "On the 2-core CPU"). Greedy π1 in score mode on these games: 42/60.
set -euo pipefail
I=${I:-runs/it1s}; O=${O:-runs/bonbeta}
P=docs/results/cpu-small-bon-beta/bon_heldout.py
# As run: the default list, then BETAS=1, then at stop 26 BETAS=3 (42/60, and all 60 episodes
# are greedy π1's own, action for action: at β 3 the PRM overruled π at no turn).
for beta in ${BETAS:-0 0.1 0.3}; do
  python $P $I 1 4 $O/ho-pi1-bon4g-b$beta eval.bon_mode=score eval.bon_greedy=true eval.bon_temperature=1.0 \
    eval.bon_beta=$beta
done
