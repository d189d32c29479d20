#!/usr/bin/env bash
# Stop 27 (issue 8, InversePRM): does a smaller γ in Eq. 9 let the InversePRM generalise, does a per-turn classifier
# (γ ≈ 0) give a better π1, an InversePRM second iteration through the loop itself, and how each PRM ranks turns by
# outcome on train games none of them saw. Run from the repository root, one command after another, on an idle
# 2-core AVX2 box in fp32. R: the score-mode run of the fp32 π0 (README "On the 2-core CPU"); S: outputs.
set -euxo pipefail
R=${R:-runs/it1s}; S=${S:-runs/s27}; S26=${S26:-runs/s26}  # S26: ../cpu-small-paper-rows/run.sh's stop-26 outputs
PI0=$R/pi0/model
inverse_recipe=(--demos $R/demos/trajectories.jsonl --rollouts $R/iter1/rollouts/trajectories.jsonl --model $PI0
  --lr 3e-4 --batch-size 16 --set max_transitions=1024 --set max_val_transitions=256 --set history_window=4
  --set max_length=2048 --set eval_batch_size=64 --set val_fraction=0.2)
# 1. γ 0.5, two epochs (675 s): validation loss 1.394 then 1.389, accuracy 0.52 then 0.53 (chance 1.386)
agentprm train-inverse-prm "${inverse_recipe[@]}" --out $S/iprm-g5 --epochs 2 --gamma 0.5
# 2. the loop's policy step from π0 against stop 26's γ 0.001 InversePRM (validation accuracy 0.586), then play
agentprm train-policy --policy $PI0 --prm $S26/iprm-g0 --states $R/iter1/rollouts/trajectories.jsonl \
  --out $S/pi1-inv-g0 --steps 40 --lr 3e-5 --set batch_states=32 --set samples=4 --set mode=constrained \
  --set max_new_tokens=24 --set history_window=null --set workers=2
python docs/results/cpu-small-shaping-fp32/play.py $R $S/pi1-inv-g0/model $S/pi1-inv-g0-play
# 3. InversePRM iteration 2 through the loop (method: inverse_prm), continuing from the InversePRM π1 with more
# held-out wins (rule fixed before: γ 0.001's only if it beat γ 0.95's 35/60; it won 34, so γ 0.95's, stop 26)
bash docs/results/cpu-small-inverse-gamma/inverse_iter2.sh $S26/iprm4 $S26/pi1-inverse $S26/pi1-inverse-play 0.95 4 \
  runs/itinv
# 4. outcome AUC on the loop's greedy plays of its 60 held-out games by π0 to π3 (runs/it3s: ../cpu-small-it3)
H=runs/it3s/heldout
agentprm targets --rollouts $H/pi0/trajectories.jsonl --rollouts $H/pi1/trajectories.jsonl \
  --rollouts $H/pi2/trajectories.jsonl --rollouts $H/pi3/trajectories.jsonl --out $S/ho-targets --gamma 0.95 \
  --val-fraction 0
python docs/results/cpu-small-inverse-gamma/outcome_auc.py $S/ho-targets $S/outcome_auc.json \
  $R/iter1/prm $S26/iprm4 $S/iprm-g5 $S26/iprm-g0 runs/itinv/iter2/prm
# the same measurement is now a command (checked on the γ 0.001 PRM: AUC 0.6804, pair accuracy 0.683, 61 s idle):
agentprm eval-prm --prm $S26/iprm-g0 --data $S/ho-targets --split train --out $S/evalprm-g0
