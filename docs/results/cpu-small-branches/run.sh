#!/usr/bin/env bash
# One AgentPRM iteration from the 48 % π0 of docs/results/cpu-small-sft20 with same-state branching: from a random
# turn of half of π0's 300 rollouts, 4 more episodes that replay it so far and sample on (the budget it had left),
# so the Monte-Carlo targets compare several actions at one state. Everything else as that run's step 3.
# Run from the repository root on the idle 2-core CPU. As run: O=/work/dev/sft20, run_dir /work/dev/branch, code from
# a snapshot of main at 2b59223 (PYTHONPATH). π0's evaluations and its 300 rollouts were copied from the run of
# cpu-small-sft20/run.sh step 3 (same config and seed, so the same jobs: the loop skipped them and played only the
# branches); running this script from nothing plays them again.
set -euo pipefail
O=${O:-runs/cpu-small-sft20}

agentprm train --config configs/cpu-small.yaml --set policy=$O/model --set rollout.branches=4 \
  --set rollout.branch_fraction=0.5 --set 'eval.best_of=[4]' --set run_dir=runs/cpu-small-branches

# Bradley–Terry PRM on the same branched targets (the loop's PRM settings, loss changed), for its pair accuracy.
agentprm train-prm --data runs/cpu-small-branches/iter1/targets --model $O/model --out runs/cpu-small-branches-bt \
  --loss bradley-terry --epochs 3 --lr 5e-4 --batch-size 4 --set max_length=2048 --set eval_batch_size=64 \
  --set history_window=null --set eval_each_epoch=false

# Best-of-4 with PRM_1 at temperature 1.0 and 0.5 on the 60 held-out train games (choosing T), then T 0.5 on valid_seen.
for T in 0.5 1.0; do python docs/results/cpu-small-branches/bon_heldout.py runs/cpu-small-branches 4 $T runs/bon-heldout-$T; done
agentprm eval --policy $O/model --prm runs/cpu-small-branches/iter1/prm --best-of 4 --bon-temperature 0.5 \
  --split valid_seen --task-type look_at_obj_in_light --task-type pick_and_place_simple \
  --task-type pick_clean_then_place_in_recep --mode constrained --max-new-tokens 24 --history -1 --workers 2 \
  --max-steps 30 --seed 0 --batch-size 64 --cpu-bf16 --out runs/bon-valid_seen-t0.5
