#!/usr/bin/env bash
# π0 with twice the SFT (20 epochs instead of 10) at the CPU main job's scale, then one AgentPRM iteration from it.
# Run from the repository root on the idle 2-core CPU, one command after another. As run: R was /work/dev/dagger
# (the DAgger run of docs/results/cpu-small-dagger/run.sh, whose demos and base model are the main job's own
# stages with the same seed), the SFT output /work/dev/sft20, the loop's run_dir /work/dev/iter-sft20. Steps 1-2 ran
# on a snapshot of main at 9c34b52 (PYTHONPATH), step 3 from main at 8f50b89, step 4 at 75ac792's parent.
set -euo pipefail
R=${R:-runs/cpu-small-dagger}
O=${O:-runs/cpu-small-sft20}

# 1. SFT: the loop's own SFT stage config (Run.sft_config, printed with asdict), 20 epochs instead of 10.
agentprm sft --demos $R/demos --model $R/base --out $O --epochs 20 --lr 1e-3 --batch-size 16 \
  --set grad_accum=1 --set warmup=0.03 --set max_length=2048 --set val_fraction=0.05 --set history_window=null \
  --set save_steps=100 --set eval_steps=200 --set logging_steps=25 --set bf16_cpu=true

# 2. π0 on the 60 held-out train games (the loop's own acting) and on the 75 valid_seen games (bf16, as the loop).
python docs/results/cpu-small-shaping/heldout_policy.py $O/model $O-heldout
agentprm eval --policy $O/model --split valid_seen --task-type look_at_obj_in_light \
  --task-type pick_and_place_simple --task-type pick_clean_then_place_in_recep --mode constrained \
  --max-new-tokens 24 --history -1 --workers 2 --max-steps 30 --seed 0 --batch-size 64 --cpu-bf16 --out $O-valid_seen

# 3. One AgentPRM iteration from this π0: the PRM trained longer (batch 4, 3 epochs) and DPO at lr 3e-5, as the
#    earlier stops' follow-ups measured; Best-of-4 on the kept policy.
agentprm train --config configs/cpu-small.yaml --set policy=$O/model --set prm.batch_size=4 --set prm.epochs=3 \
  --set 'prm.extra={max_length: 2048, eval_batch_size: 64, eval_each_epoch: false}' --set policy_step.lr=3.0e-5 \
  --set 'eval.best_of=[4]' --set run_dir=$O-iter
# 4. Best-of-2 and -8 added afterwards: the same run resumed with the wider list (only those two stages run).
agentprm train --config configs/cpu-small.yaml --set policy=$O/model --set prm.batch_size=4 --set prm.epochs=3 \
  --set 'prm.extra={max_length: 2048, eval_batch_size: 64, eval_each_epoch: false}' --set policy_step.lr=3.0e-5 \
  --set 'eval.best_of=[2,4,8]' --set run_dir=$O-iter --force
# report.md was then rewritten with agentprm.report.write_report (the report stage was already done).
