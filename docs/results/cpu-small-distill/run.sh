#!/usr/bin/env bash
# This stop's runs, from the repository root on the 2-core AMD EPYC (AVX2, no native bf16), one after another.
# As run: R was /work/dev/runs/pi0, I /work/dev/runs/it1, O /work/dev/runs, on a snapshot of main at 80e04d4
# (PYTHONPATH), the commit that makes CPU bf16 fall back to fp32 on such CPUs.
set -euo pipefail
R=${R:-runs/cpu-small-pi0}
I=${I:-runs/cpu-small-it1}
O=${O:-runs}

# 0. Why the first try stalled: one training step in fp32 and under bf16 autocast (0.65 s vs 19.6 s here).
python docs/results/cpu-small-distill/bf16_step.py $R/base

# 1. π0 by the main job's own stages (demos → base → SFT 20 epochs → eval π0 → held-out π0), no iteration; in fp32
#    here (acting.cpu_bf16 and sft bf16_cpu fall back): 41/75 valid_seen, 27/60 held-out.
agentprm train --config configs/cpu-small.yaml --set iterations=0 --set run_dir=$R

# 2. One iteration on a copy: rollouts → targets → PRM_1 → DPO → π1 on valid_seen and held-out (stopped by hand after
#    heldout/pi1, before Best-of-N): π1 42/75 and 28/60.
cp -r $R $I
agentprm train --config configs/cpu-small.yaml --set run_dir=$I --set iterations=1 --force

# 3. The would-be teacher of a distilled π1 against greedy π0, on 60 of the iteration's 150 rollout games (20 per
#    type): greedy 43/60, Best-of-4 + look-ahead K = 3 with PRM_1 44/60. One game apart, so no SFT on its episodes
#    followed.
python docs/results/cpu-small-distill/play_rollout_games.py $I $O/rg-greedy 0 60
python docs/results/cpu-small-distill/play_rollout_games.py $I $O/rg-look3 3 60

# 4. The same look-ahead on the 75 valid_seen games (the last stop's unfinished run, from this π0): 42/75.
agentprm eval --policy $I/pi0/model --prm $I/iter1/prm --best-of 4 --lookahead 3 --lookahead-workers 2 \
  --split valid_seen --task-type look_at_obj_in_light --task-type pick_and_place_simple \
  --task-type pick_clean_then_place_in_recep --mode constrained --max-new-tokens 24 --history -1 --workers 2 \
  --max-steps 30 --seed 0 --batch-size 64 --in-flight 32 --cpu-bf16 --out $O/vs-look3
