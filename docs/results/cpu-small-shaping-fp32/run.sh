#!/usr/bin/env bash
# Process reward shaping (paper §4) against plain AgentPRM in the low-sample regime, from the fp32 π0 (41/75
# constrained, 40/75 in score mode) and judged as the loop now judges: greedy in score mode on the 60 held-out train
# games and the 75 valid_seen games (play.py). Run from the repository root on a copy of the cpu-small run that has
# finished iteration 1 (R: π0 in R/pi0/model, its 300 iteration-1 rollouts, 170 won). The recipe is
# docs/results/cpu-small-shaping/run.sh's, unchanged: a tenth of the rollouts (every 10th episode: 30) for the PRM;
# V_ref of π0 from the other 270 (a value model, `train-prm --reads state`); each π1 one DPO step from π0 as the
# loop takes it (40 steps, lr 3e-5, 32 states × 4 samples, constrained sampling at T 1) on the PRM's 30 episodes.
set -eux
R=${R:-runs/it1s}; S=${S:-runs/shaping-fp32}; D=docs/results/cpu-small-shaping-fp32
mkdir -p "$S"
roll=$R/iter1/rollouts/trajectories.jsonl
# (as run, this split was inline Python; split_rollouts.py writes the same two files: cmp on runs/it1s's rollouts)
python docs/results/cpu-small-shaping/split_rollouts.py "$roll" "$S/low.jsonl" "$S/rest.jsonl"
prm_recipe=(--lr 5e-4 --batch-size 4 --set eval_each_epoch=false --set history_window=null --set max_length=2048
  --set eval_batch_size=64)
step() {  # step PRM OUT: the DPO step from π0 against PRM, then greedy score-mode play on held-out and valid_seen
  agentprm train-policy --policy $R/pi0/model --prm "$1" --states "$S/low.jsonl" --out "$2" --steps 40 --lr 3e-5 \
    --set batch_states=32 --set samples=4 --set mode=constrained --set max_new_tokens=24 --set history_window=null \
    --set workers=2
  python $D/play.py $R "$2/model" "$2-play"
}
# 1. unshaped AgentPRM targets and PRM on the 30 episodes
agentprm targets --rollouts "$S/low.jsonl" --out "$S/t-low" --gamma 0.95 --val-fraction 0.2
agentprm train-prm --data "$S/t-low" --model $R/pi0/model --out "$S/prm-low" --epochs 10 "${prm_recipe[@]}"
step "$S/prm-low" "$S/pi1-low"
# 2. shaped: V_ref from the other 270 episodes, then the same 30 episodes shaped by it
agentprm targets --rollouts "$S/rest.jsonl" --out "$S/t-values" --values --gamma 0.95 --val-fraction 0.2
agentprm train-prm --data "$S/t-values" --model $R/pi0/model --out "$S/value" --reads state --epochs 3 \
  "${prm_recipe[@]}"
agentprm targets --rollouts "$S/low.jsonl" --out "$S/t-shaped" --shaping-value "$S/value" --gamma 0.95 --val-fraction 0.2
agentprm train-prm --data "$S/t-shaped" --model $R/pi0/model --out "$S/prm-shaped" --epochs 10 "${prm_recipe[@]}"
step "$S/prm-shaped" "$S/pi1-shaped"
# 3. both PRMs on the run's iteration-1 validation rows (games neither trained on)
python docs/results/cpu-small-shaping/auc.py $R/iter1/targets/val.parquet "$S/prm-low" "$S/prm-shaped"
