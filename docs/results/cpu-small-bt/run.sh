#!/usr/bin/env bash
# Relative (Bradley–Terry) PRM against soft BCE, in the loop, on the same branching rollouts (paper §4's relative
# PRM; issue "The rest of the paper", item 3). Run from the repository root after the main job
# (`agentprm train --config configs/cpu-small.yaml`), which leaves π0 in runs/cpu-small/pi0/model.
# As run: both loops from snapshot worktrees of main (PYTHONPATH), one after the other; the soft-BCE loop reused
# the Bradley–Terry loop's π0 evaluations, rollouts and targets (copied, with those four stages marked done), so
# both PRMs read the very same 320 episodes. Figures: README ("Bradley–Terry PRM against soft BCE") and
# results.json beside this script.
set -eux
# 40 of the loop's rollout games × 8 episodes each (320, about the main job's 300), so that a game's episodes
# share their first states and the targets have same-state actions to pair; every other setting is the
# low-sample runs' recipe (PRM 3 epochs at batch 4; DPO 40 steps at lr 3e-5)
common=(--config configs/cpu-small.yaml --set policy=runs/cpu-small/pi0/model
  --set data.rollout_games=40 --set rollout.repeats=8
  --set prm.batch_size=4 --set prm.epochs=3 --set 'prm.extra={max_length: 2048, eval_batch_size: 64, eval_each_epoch: false}'
  --set policy_step.lr=3.0e-5 --set 'eval.best_of=[4]')
agentprm train "${common[@]}" --set run_dir=runs/cpu-small-bt --set prm.loss=bradley-terry
B=runs/cpu-small-bt; C=runs/cpu-small-bce
mkdir -p $C/eval $C/heldout $C/iter1
cp -r $B/eval/pi0 $C/eval/; cp -r $B/heldout/pi0 $C/heldout/; cp -r $B/iter1/rollouts $B/iter1/targets $C/iter1/
python - <<'PY'
import json
s = json.load(open("runs/cpu-small-bt/state.json"))
keep = ["eval/pi0", "heldout/pi0", "iter1/rollouts", "iter1/targets"]
json.dump({"done": keep, "seconds": {k: s["seconds"][k] for k in keep}}, open("runs/cpu-small-bce/state.json", "w"))
PY
agentprm train "${common[@]}" --set run_dir=$C --set prm.loss=soft-bce
