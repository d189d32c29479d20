#!/usr/bin/env bash
# DAgger vs plain SFT for π0 at the CPU main job's scale (issue 7, item 2: "measure which data gives the better π0").
# Run from the repository root on the idle 2-core CPU, one command after another (as they were run: the loop with
# its outputs under /work/dev/dagger, code from a snapshot worktree of main at 9c34b52 via PYTHONPATH).
set -euo pipefail
R=${R:-runs/cpu-small-dagger}

# 1. demos → scratch model → SFT π0 (the main job's own stages, same seed) → 2 DAgger rounds → eval of the last
#    round on the 75 valid_seen games and the 60 held-out train games. Each round: the policy before it plays 300
#    train games greedily with the handcoded expert beside it, then 1 epoch of SFT from that policy on the demos +
#    every round's relabelled states (the first 4 states per episode where the expert disagrees).
agentprm train --config configs/cpu-small.yaml --set dagger.rounds=2 --set dagger.games=300 --set iterations=0 \
  --set run_dir=$R

# 2. The SFT-only π0 and round 1's policy on the same games, acting exactly as the loop does (bf16 autocast).
for P in pi0 dagger1; do
  agentprm eval --policy $R/$P/model --split valid_seen --task-type look_at_obj_in_light \
    --task-type pick_and_place_simple --task-type pick_clean_then_place_in_recep --mode constrained \
    --max-new-tokens 24 --history -1 --workers 2 --max-steps 30 --seed 0 --batch-size 64 --cpu-bf16 \
    --out $R/vs-$P
  python docs/results/cpu-small-shaping/heldout_policy.py $R/$P/model $R/ho-$P
done

# 3. Round 1 again at a gentler learning rate (grad_accum left at its default 4: batch 64, 74 steps), same data.
agentprm sft --demos $R/demos --demos $R/dagger1/rollouts --model $R/pi0/model --out $R-round1-lr2e-4 --epochs 2 \
  --lr 2e-4 --batch-size 16 --set labels=auto --set max_relabels=4 --set warmup=0.03 --set max_length=2048 \
  --set val_fraction=0.05 --set history_window=null --set save_steps=100 --set eval_steps=200 --set logging_steps=25 \
  --set bf16_cpu=true
python docs/results/cpu-small-shaping/heldout_policy.py $R-round1-lr2e-4/model $R/ho-round1-lr2e-4

# 4. results.json (held-out lines as printed by heldout_policy.py, collected in one text file):
# python docs/results/cpu-small-dagger/collect.py $R <eval dir> <held-out lines> docs/results/cpu-small-dagger/results.json \
#   $R-round1-lr2e-4 runs/cpu-small-sft20
# as run: collect.py /work/dev/dagger /work/dev/ev /work/dev/ev/heldout.txt <out> /work/dev/var-lr2e-4-ep2 /work/dev/sft20
