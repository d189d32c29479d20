#!/usr/bin/env bash
# Outcome-filtered self-imitation as the policy step, against a control with the same extra SFT on the demos
# alone. Run from the repository root on the 2-core CPU, one command after another. As run: R was
# /work/dev/pi0run, I /work/dev/it1, O /work/dev, on a snapshot of main at a99bc8d (PYTHONPATH).
set -euo pipefail
R=${R:-runs/cpu-small-pi0}
I=${I:-runs/cpu-small-it1}
O=${O:-runs}

# 1. π0 by the main job's own stages (demos → base → SFT 20 epochs → eval π0 → held-out π0), no iteration.
agentprm train --config configs/cpu-small.yaml --set iterations=0 --set run_dir=$R

# 2. The loop's rollouts of π0 (150 train games × 2 at temperature 1; the held-out games excluded): the same
#    run resumed with one iteration, stopped once iter1/rollouts and iter1/targets were done.
cp -r $R $I
agentprm train --config configs/cpu-small.yaml --set run_dir=$I --set iterations=1 --force  # stopped by hand after iter1/targets

# 3. π1 = π0 fine-tuned 2 more epochs at lr 3e-4 on the demos plus π0's won rollouts ("won"), and the control:
#    π0 fine-tuned the same way on the demos alone ("ctl"). SFT keeps only won episodes of what it is given.
SFT="--lr 3e-4 --batch-size 16 --set grad_accum=1 --set warmup=0.03 --set max_length=2048 --set val_fraction=0.05
  --set history_window=null --set save_steps=100 --set eval_steps=1000 --set logging_steps=25 --set bf16_cpu=true"
agentprm sft --model $R/pi0/model --demos $R/demos --demos $I/iter1/rollouts --out $O/sft-won --epochs 2 $SFT
agentprm sft --model $R/pi0/model --demos $R/demos --out $O/sft-ctl --epochs 2 $SFT
# the won rollouts without the demos: all of them, and the shortest won episode per game
python docs/results/cpu-small-selfimitation/shortest_won.py $I/iter1/rollouts $O/shortest
agentprm sft --model $R/pi0/model --demos $I/iter1/rollouts --out $O/sft-wononly --epochs 2 $SFT
agentprm sft --model $R/pi0/model --demos $O/shortest --out $O/sft-shortonly --epochs 2 $SFT

# 4. Each on the loop's 60 held-out train games (the loop's own greedy acting); the two with demos also on the 75
#    valid_seen games (the other two lost held-out games, so they were not played there).
for name in won ctl wononly shortonly; do
  python docs/results/cpu-small-shaping/heldout_policy.py $O/sft-$name/model $O/held-$name
done
for name in won ctl; do
  agentprm eval --policy $O/sft-$name/model --split valid_seen --task-type look_at_obj_in_light \
    --task-type pick_and_place_simple --task-type pick_clean_then_place_in_recep --mode constrained \
    --max-new-tokens 24 --history -1 --workers 2 --max-steps 30 --seed 0 --batch-size 64 --cpu-bf16 --out $O/vs-$name
done
