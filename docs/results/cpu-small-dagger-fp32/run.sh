#!/usr/bin/env bash
# DAgger from the fp32 π0 (41/75 valid_seen, 27/60 held-out; docs/results/cpu-small-distill), issue 7 item 2.
# Run from the repository root on the idle 2-core CPU, one step after another, as they were run (code from a
# snapshot worktree of main via PYTHONPATH; R, D, D2 and C under /work/dev/runs).
set -euo pipefail
R=${R:-runs/pi0}            # the fp32 π0 run: agentprm train --config configs/cpu-small.yaml --set iterations=0
D=${D:-runs/dag}; D2=${D2:-runs/dag2}; C=${C:-runs}

# A run folder that holds π0's stages as done (demos, base, sft) and no evaluations.
fresh() {
  mkdir -p "$1" && cp -r $R/base $R/demos $R/pi0 $R/config.yaml $R/run.json "$1"/
  python -c "import json,sys; s=json.load(open('$R/state.json')); s['done']=sys.argv[2:]; s['partial']={}; \
json.dump(s, open(sys.argv[1] + '/state.json', 'w'))" "$1" demos base sft
}

# 1. One DAgger round as the loop runs it: π0 plays 300 train games greedily with the handcoded expert beside it,
#    then 1 epoch of SFT from π0 on the demos + the relabelled states (the first 4 disagreements per episode),
#    lr 2e-4; then the loop evaluates the new π0 on the 75 valid_seen games and the 60 held-out train games.
fresh $D
agentprm train --config configs/cpu-small.yaml --set run_dir=$D --set iterations=0 --set dagger.rounds=1 \
  --set dagger.lr=2e-4 --set dagger.games=300 --force

# 2. Where the disagreements fall (won/lost episodes, before/after the first repeated (observation, action)).
python docs/results/cpu-small-dagger-fp32/dagger_stats.py $D/dagger1/rollouts

# 3. The same round on the same learner episodes, relabelling only from the first repeat on.
fresh $D2 && mkdir -p $D2/dagger1 && cp -r $D/dagger1/rollouts $D2/dagger1/
python -c "import json; p='$D2/state.json'; s=json.load(open(p)); s['done'].append('dagger1/rollouts'); \
json.dump(s, open(p, 'w'))"
agentprm train --config configs/cpu-small.yaml --set run_dir=$D2 --set iterations=0 --set dagger.rounds=1 \
  --set dagger.lr=2e-4 --set dagger.games=300 --set dagger.relabel_from=first_repeat --force

# 4. Controls: the round's SFT (same lr, schedule, batch, 1 epoch) on the demos alone.
S="--epochs 1 --lr 2e-4 --batch-size 16 --set warmup=0.03 --set max_length=2048 --set val_fraction=0.05 \
--set history_window=null --set save_steps=100 --set eval_steps=200 --set logging_steps=25 --set bf16_cpu=true --set grad_accum=1"
EV="--split valid_seen --task-type look_at_obj_in_light --task-type pick_and_place_simple \
--task-type pick_clean_then_place_in_recep --mode constrained --max-new-tokens 24 --history -1 --workers 2 \
--max-steps 30 --seed 0 --batch-size 64 --cpu-bf16"
agentprm sft --demos $D/demos --model $D/pi0/model --out $C/ctlA $S
agentprm eval --policy $C/ctlA/model $EV --out $C/ctlA-vs
python docs/results/cpu-small-shaping/heldout_policy.py $C/ctlA/model $C/ctlA-ho
