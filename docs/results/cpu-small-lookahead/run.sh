#!/usr/bin/env bash
# Best-of-4 vs look-ahead (K = 1 control, K = 3) at equal N on the 75 valid_seen games of the CPU main job's three task types:
# π0 of `agentprm train --config configs/cpu-small.yaml` (runs/cpu-small/pi0/model) and the PRM retrained on that
# run's iteration-1 targets for 172 steps (validation AUC 0.94; README: the `agentprm train-prm ... --out
# runs/prm-b4` command). Measured with PRM = /work/dev/prm-b4/model, outputs under /work/dev/exp/la-{bon4,look1,look3}.
set -u
cd "$(git rev-parse --show-toplevel)"
prm=${PRM:-runs/prm-b4/model} out=${OUT_DIR:-runs/lookahead}
common=(--policy runs/cpu-small/pi0/model --split valid_seen --task-type look_at_obj_in_light
  --task-type pick_and_place_simple --task-type pick_clean_then_place_in_recep --mode constrained --history -1
  --max-new-tokens 24 --max-steps 30 --prm "$prm" --best-of 4 --bon-temperature 1.0 --workers 2 --seed 0)
for spec in "bon4" "look1 --lookahead 1" "look3 --lookahead 3"; do
  set -- $spec; name=$1; shift
  /usr/bin/time -f "$name wall %e s" agentprm eval "${common[@]}" "$@" --out "$out/$name"
done
