#!/usr/bin/env bash
# π0 on all 140 valid_seen games: the CPU main job's π0 recipe (4.4 M scratch model, 20 epochs of SFT on handcoded
# demos) trained on five task types instead of three. Pick2 is left out of the demos because the handcoded expert
# almost never wins it (2/24 on valid_seen, ../shared/ALFWORLD-EXPERTS.md), so π0 has no Pick2 demos; it is still
# evaluated on valid_seen's 24 Pick2 games, so the figure is over all 140. Run from the repository root on the idle
# 2-core CPU (as run: R=/work/dev/six/run, code from a snapshot of main at 7a2dc90 via PYTHONPATH).
set -euo pipefail
R=${R:-runs/cpu-small-5types}

# 1. demos (2,000 train games in the five types' proportions) → scratch model → SFT π0 (20 epochs) → π0 on the 116
#    valid_seen games of the five types and on the 60 held-out train games.
agentprm train --config configs/cpu-small.yaml --set iterations=0 --set run_dir=$R --set data.demo_games=2000 \
  --set 'data.task_types=[look_at_obj_in_light,pick_and_place_simple,pick_clean_then_place_in_recep,pick_heat_then_place_in_recep,pick_cool_then_place_in_recep]'

# 2. π0 on valid_seen's 24 Pick2 games, acting as the loop does.
agentprm eval --policy $R/pi0/model --split valid_seen --task-type pick_two_obj_and_place --mode constrained \
  --max-new-tokens 24 --history -1 --workers 2 --max-steps 30 --seed 0 --batch-size 64 --cpu-bf16 --out $R-pick2
