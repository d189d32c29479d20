#!/usr/bin/env bash
# Process reward shaping (§4) and InversePRM (§3) against plain AgentPRM at the CPU scale, low-sample regime.
# Run from the repository root after the main job (`agentprm train --config configs/cpu-small.yaml`), which
# leaves π0 (runs/cpu-small/pi0/model), its 1,200 handcoded-expert demos and its 300 iteration-1 rollouts.
# The figures (README: "Shaping and InversePRM in the low-sample regime"; results.json beside this script) came
# from these same commands run as four scripts with S=/work/dev/shape and other output names (pi1-X was dpo-X,
# its evaluations ho-dpo-X and vs-dpo-X); this file collects them and was not itself run end to end. The
# held-out evaluations used a copy of heldout_policy.py with the acting config written out (the same as the
# loop's; this file's version reproduces π0's 12/60). Every π1 gets the same
# DPO step (40 steps, lr 3e-5, 32 states × 4 samples) and the same evaluations (60 held-out train games:
# heldout_policy.py; the 75 valid_seen games of the main job's task types).
set -eux
S=${S:-runs/shaping}
mkdir -p "$S"
roll=runs/cpu-small/iter1/rollouts/trajectories.jsonl
# a tenth of the rollouts (every 10th of 300 episodes: 30 episodes, 4 won) for the PRMs; the other 270
# for the reference value V_ref of π0
# (as run, this split was inline Python; split_rollouts.py writes the same two files: cmp on runs/it1s's rollouts)
python docs/results/cpu-small-shaping/split_rollouts.py "$roll" "$S/low.jsonl" "$S/rest.jsonl"
prm_recipe=(--lr 5e-4 --batch-size 4 --set eval_each_epoch=false --set history_window=null --set max_length=2048
  --set eval_batch_size=64)
dpo() {  # dpo PRM STATES OUT
  agentprm train-policy --policy runs/cpu-small/pi0/model --prm "$1" --states "$2" --out "$3" --steps 40 --lr 3e-5 \
    --set batch_states=32 --set samples=4 --set mode=constrained --set max_new_tokens=24 --set history_window=null \
    --set workers=2
  python docs/results/cpu-small-shaping/heldout_policy.py "$3/model" "$3-heldout"
  agentprm eval --policy "$3/model" --split valid_seen --task-type look_at_obj_in_light \
    --task-type pick_and_place_simple --task-type pick_clean_then_place_in_recep --mode constrained \
    --max-new-tokens 24 --history -1 --workers 2 --max-steps 30 --seed 0 --out "$3-valid_seen"
}
# 1. unshaped AgentPRM PRM on the 30 episodes
agentprm targets --rollouts "$S/low.jsonl" --out "$S/t-low" --gamma 0.95 --val-fraction 0.2
agentprm train-prm --data "$S/t-low" --model runs/cpu-small/pi0/model --out "$S/prm-low" --epochs 10 "${prm_recipe[@]}"
dpo "$S/prm-low" "$S/low.jsonl" "$S/pi1-low"
# 2. shaped: V_ref from the other 270 episodes, then the same 30 episodes shaped by it
agentprm targets --rollouts "$S/rest.jsonl" --out "$S/t-values" --values --gamma 0.95 --val-fraction 0.2
agentprm train-prm --data "$S/t-values" --model runs/cpu-small/pi0/model --out "$S/value" --reads state --epochs 3 \
  "${prm_recipe[@]}"
agentprm targets --rollouts "$S/low.jsonl" --out "$S/t-shaped" --shaping-value "$S/value" --gamma 0.95 --val-fraction 0.2
agentprm train-prm --data "$S/t-shaped" --model runs/cpu-small/pi0/model --out "$S/prm-shaped" --epochs 10 \
  "${prm_recipe[@]}"
dpo "$S/prm-shaped" "$S/low.jsonl" "$S/pi1-shaped"
# 3. both PRMs on the main job's full iteration-1 validation rows (34 games neither trained on)
python docs/results/cpu-small-shaping/auc.py runs/cpu-small/iter1/targets/val.parquet "$S/prm-low" "$S/prm-shaped"
# 4. InversePRM: demos vs all 300 rollouts of π0, no outcome read
agentprm train-inverse-prm --demos runs/cpu-small/demos/trajectories.jsonl --rollouts "$roll" \
  --model runs/cpu-small/pi0/model --out "$S/iprm" --epochs 1 --lr 3e-4 --batch-size 8 --set max_transitions=1200 \
  --set history_window=null --set max_length=2048 --set eval_batch_size=64 --set val_fraction=0.2
dpo "$S/iprm" "$roll" "$S/pi1-inverse"
# 5. π0 under the same valid_seen command (agentprm eval acts in fp32; the loop acted under bf16 autocast)
agentprm eval --policy runs/cpu-small/pi0/model --split valid_seen --task-type look_at_obj_in_light \
  --task-type pick_and_place_simple --task-type pick_clean_then_place_in_recep --mode constrained \
  --max-new-tokens 24 --history -1 --workers 2 --max-steps 30 --seed 0 --out "$S/pi0-valid_seen"
# 6. (the next stop) the shaped targets squashed around the median y instead of the mean; the same PRM recipe,
#    DPO step and evaluations as 2.
agentprm targets --rollouts "$S/low.jsonl" --out "$S/t-median" --shaping-value "$S/value" --shaping-centre median \
  --gamma 0.95 --val-fraction 0.2
agentprm train-prm --data "$S/t-median" --model runs/cpu-small/pi0/model --out "$S/prm-median" --epochs 10 \
  "${prm_recipe[@]}"
dpo "$S/prm-median" "$S/low.jsonl" "$S/pi1-median"
python docs/results/cpu-small-shaping/auc.py runs/cpu-small/iter1/targets/val.parquet "$S/prm-median"
