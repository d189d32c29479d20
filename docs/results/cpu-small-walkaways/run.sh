#!/usr/bin/env bash
# Where the fp32 π0 loses, how its PRM and the policy itself rank the missed action, and how it decodes.
# Run from the repository root. I: the run of one iteration from the fp32 π0 (docs/results/cpu-small-distill/run.sh
# step 3): I/pi0 is π0, I/iter1/prm is PRM_1, I/iter1/policy is π1, with π0's valid_seen, held-out and rollout
# episodes. As run (stop 23): from a snapshot worktree of main, sharing the 2-core CPU with the DPO runs of
# docs/results/cpu-small-paper-rows/run.sh, so the walls below are not idle figures.
set -euo pipefail
I=${I:-runs/it1}; O=${O:-runs/walkaways}
D=docs/results/cpu-small-walkaways
# 1. lost episodes by class (trajectories only) -> where_lost.txt (first three files)
python $D/where_lost.py $I/eval/pi0/trajectories.jsonl $I/heldout/pi0/trajectories.jsonl \
  $I/iter1/rollouts/trajectories.jsonl
# 2. at the walk-away turns: PRM_1's and π0's rank of "take <object>" among all admissible -> rank_at_walkaways.txt
python $D/rank_at_walkaways.py $I/iter1/prm $I/pi0/model $I/heldout/pi0/trajectories.jsonl \
  $I/iter1/rollouts/trajectories.jsonl
# 3. the 60 held-out train games, each agent greedy over π0 (the loop's games, seed and step budget)
python $D/take_rule.py $I $O/ho-pi0-takerule       # + "take the task's object when first admissible" (a ceiling)
python $D/bon_topk.py $I 0 4 $O/ho-pi0-top4        # greedy + π0's 4 likeliest admissible actions, PRM_1 picks
python $D/heldout_mode.py $I score $O/ho-pi0-score 0   # π0 acting in score mode (sequence argmax over admissible)
python $D/heldout_mode.py $I score $O/ho-pi1-score 1   # π1 likewise
# 4. the 75 valid_seen games of the three task types, score mode, the flags of every valid_seen row
vs=(--split valid_seen --task-type look_at_obj_in_light --task-type pick_and_place_simple
  --task-type pick_clean_then_place_in_recep --mode score --max-new-tokens 24 --history -1 --workers 2
  --max-steps 30 --seed 0 --batch-size 64 --cpu-bf16)
agentprm eval --policy $I/pi0/model "${vs[@]}" --out $O/vs-pi0-score
agentprm eval --policy $I/iter1/policy/model "${vs[@]}" --out $O/vs-pi1-score
python $D/where_lost.py $O/ho-pi0-score/trajectories.jsonl $O/vs-pi0-score/trajectories.jsonl
# 5. the loop's own stages with eval.mode=score, on a copy of I with its evaluations undone. As run, in two resumes:
#    the held-out stages and the selection first (stopped after `select`: π0 35/60, π1 42/60, π1 kept), then the
#    valid_seen stages (stopped after `eval/pi1`); this file undoes all of them at once and resumes once.
cp -r $I ${I}s
python -c "import json, shutil; p='${I}s/state.json'; s=json.load(open(p)); u=('heldout/pi0', 'heldout/pi1', \
'select', 'report', 'eval/pi0', 'eval/pi1'); s['done']=[d for d in s['done'] if d not in u]; s['partial']={}; \
json.dump(s, open(p, 'w')); [shutil.rmtree('${I}s/' + d, ignore_errors=True) for d in u[:2] + u[4:]]"
agentprm train --config ${I}s/config.yaml --set run_dir=${I}s --set eval.mode=score --force  # stopped after eval/pi1
