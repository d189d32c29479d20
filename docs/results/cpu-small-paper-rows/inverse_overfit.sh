#!/usr/bin/env bash
# Can the InversePRM learn at all from this π0's data? 16 expert and 16 learner transitions (seeded samples), seen
# 20 times over (2 steps per epoch), lr 3e-4. As run (stop 25): stopped after epoch 8 of 20, the last step's loss
# at the end of epochs 1-8: 1.386, 1.381, 1.350, 1.274, 1.151, 1.078, 0.794, 0.770 (2·ln 2 = 1.386 at chance). Run from the repository
# root; R is the cpu-small run with its demos and iteration-1 rollouts.
set -eux
R=${R:-runs/it1s}
agentprm train-inverse-prm --demos $R/demos/trajectories.jsonl --rollouts $R/iter1/rollouts/trajectories.jsonl \
  --model $R/pi0/model --out runs/inverse-overfit --epochs 20 --lr 3e-4 --batch-size 8 \
  --set max_transitions=16 --set max_val_transitions=8 --set max_length=2048 --set eval_batch_size=16
