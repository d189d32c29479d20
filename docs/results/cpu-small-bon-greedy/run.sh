#!/usr/bin/env bash
# Best-of-N with the policy's greedy answer among the candidates (eval.bon_greedy, `agentprm eval --bon-greedy`)
# against plain Best-of-N, on the cpu-small loop's 60 held-out train games. Run from the repository root on the
# idle 2-core CPU. I: the run of one iteration from the fp32 π0 (docs/results/cpu-small-distill/run.sh step 3),
# whose iter1/policy is π1 and iter1/prm is PRM_1.
set -euo pipefail
I=${I:-runs/it1}; O=${O:-runs/bon}
P=docs/results/cpu-small-bon-greedy/bon_heldout.py
python $P $I 1 4 1.0 1 $O/ho-pi1-bon4g   # π1 + Best-of-4, greedy answer first, 3 samples at T 1
python $P $I 1 4 1.0 0 $O/ho-pi1-bon4    # π1 + Best-of-4, 4 samples at T 1
# (greedy π1 on the same games: the loop's heldout/pi1, 28/60)

# PRM_1 from three times the rollouts (6 per game instead of 2) from the same π0, then the same Best-of-4 with
# greedy among the candidates, with the same π1. The loop resumed on a copy of I whose iteration-1 stages after the
# rollouts are undone (it plays only the 4 new episodes per game), stopped by hand after iter1/prm; π1 copied in.
cp -r $I ${I}x && rm -rf ${I}x/iter1/{targets,prm,policy} ${I}x/eval/pi1 ${I}x/heldout/pi1
python -c "import json; p='${I}x/state.json'; s=json.load(open(p)); s['done']=[d for d in s['done'] \
if not d.startswith(('iter1/', 'eval/pi1', 'heldout/pi1'))]; s['partial']={}; json.dump(s, open(p, 'w'))"
agentprm train --config ${I}x/config.yaml --set run_dir=${I}x --set rollout.repeats=6 --force  # stopped after iter1/prm
cp -r $I/iter1/policy ${I}x/iter1/policy
python $P ${I}x 1 4 1.0 1 $O/ho-pi1-bon4g-prm6
