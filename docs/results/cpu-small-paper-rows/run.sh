#!/usr/bin/env bash
# Issue 8's rows from the fp32 π0 (41/75): Best-of-4 on valid_seen, InversePRM, and soft BCE vs Bradley–Terry on 3x
# the rollouts. Run from the repository root. I: the run of one iteration from the fp32 π0
# (docs/results/cpu-small-distill/run.sh step 3); X: its copy with 6 rollouts per game and PRM_1 retrained on them
# (docs/results/cpu-small-bon-greedy/run.sh). As run (stop 23): from a snapshot worktree of main, one step after
# another, sharing the CPU with docs/results/cpu-small-walkaways/run.sh. Step 2 was stopped by hand at step 44/150
# (loss at chance), so its π1 was never trained; step 4 (Bradley–Terry) was stopped before it began, for time.
# Stop 26 ran the rest (the block at the end), alone on the idle CPU, one step after another.
set -ux
I=${I:-runs/it1}; X=${X:-runs/it1x}; S=${S:-runs/paper-rows}
PI0=$I/pi0/model
vs=(--split valid_seen --task-type look_at_obj_in_light --task-type pick_and_place_simple
  --task-type pick_clean_then_place_in_recep --mode constrained --max-new-tokens 24 --history -1 --workers 2
  --max-steps 30 --seed 0 --batch-size 64 --cpu-bf16)
prm_recipe=(--lr 5e-4 --batch-size 4 --set eval_each_epoch=false --set history_window=null --set max_length=2048
  --set eval_batch_size=64)
policy_step() {  # policy_step PRM STATES OUT: the loop's policy step from π0 (40 steps, lr 3e-5, 32 states x 4 samples)
  agentprm train-policy --policy $PI0 --prm "$1" --states "$2" --out "$3" --steps 40 --lr 3e-5 \
    --set batch_states=32 --set samples=4 --set mode=constrained --set max_new_tokens=24 --set history_window=null \
    --set workers=2
}
dpo() {  # dpo PRM STATES OUT: the policy step, then both evaluations as stop 23 played them (constrained)
  policy_step "$@"
  python docs/results/cpu-small-shaping/heldout_policy.py "$3/model" "$3-heldout"
  agentprm eval --policy "$3/model" "${vs[@]}" --out "$3-valid_seen"
}
# 1. Best-of-4 on valid_seen: π1 + PRM_1 of the loop's iteration 1 -> 31/75
agentprm eval --policy $I/iter1/policy/model --prm $I/iter1/prm --best-of 4 --bon-temperature 1.0 "${vs[@]}" \
  --out $S/vs-pi1-bon4
# 2. InversePRM from π0: the demos vs π0's 300 rollouts, no outcome read; then the same DPO step (stopped, above)
agentprm train-inverse-prm --demos $I/demos/trajectories.jsonl --rollouts $I/iter1/rollouts/trajectories.jsonl \
  --model $PI0 --out $S/iprm --epochs 1 --lr 3e-4 --batch-size 8 --set max_transitions=1200 \
  --set max_val_transitions=600 --set history_window=null --set max_length=2048 --set eval_batch_size=64 \
  --set val_fraction=0.2
dpo $S/iprm $I/iter1/rollouts/trajectories.jsonl $S/pi1-inverse
# 3. π1 against the soft-BCE PRM_1 of 6 rollouts per game (X) -> 43/75, 28/60 held-out; in score mode 39/60 held-out
dpo $X/iter1/prm $X/iter1/rollouts/trajectories.jsonl $S/pi1-bce6
# 4. the Bradley–Terry PRM on the same targets and its π1: not run at stop 23; stop 26 ran it (below)

# --- Stop 26: step 4 as run, the InversePRM with a recipe the CPU can finish, and every π1 played as the loop now
# evaluates (greedy, score mode, its 60 held-out and 75 valid_seen games: ../cpu-small-shaping-fp32/play.py, R the
# score-mode run of the same π0). Figures: results.json ("score_mode"), README "On the 2-core CPU".
R=${R:-runs/it1s}
play() { python docs/results/cpu-small-shaping-fp32/play.py $R "$1" "$2"; }
step() {  # step PRM STATES OUT: the policy step, then play in score mode
  policy_step "$@"
  play "$3/model" "$3-play"
}
# 4. Bradley–Terry on the 900 rollouts' 253 same-state pairs (δ 0.03), its π1, and the soft-BCE π1 of step 3 replayed
agentprm train-prm --data $X/iter1/targets --model $PI0 --out $S/prm-bt6 --loss bradley-terry --epochs 3 \
  "${prm_recipe[@]}"
step $S/prm-bt6 $X/iter1/rollouts/trajectories.jsonl $S/pi1-bt6
play $S/pi1-bce6/model $S/pi1-bce6-play
# 2 again. InversePRM: 1,024 transitions a side (of 1,200 demos and π0's 300 rollouts), 4 epochs of 64 steps at batch
# 16, the last 4 turns in the prompt (shorter sequences, so more steps fit), then the same policy step
inverse_recipe=(--demos $R/demos/trajectories.jsonl --rollouts $R/iter1/rollouts/trajectories.jsonl --model $PI0
  --lr 3e-4 --batch-size 16 --set max_transitions=1024 --set max_val_transitions=256 --set history_window=4
  --set max_length=2048 --set eval_batch_size=64 --set val_fraction=0.2)
agentprm train-inverse-prm "${inverse_recipe[@]}" --out $S/iprm4 --epochs 4
step $S/iprm4 $R/iter1/rollouts/trajectories.jsonl $S/pi1-inverse
# a diagnostic: the same InversePRM recipe with γ ≈ 0 (r ≈ Q(s,a): a plain expert-vs-learner classifier of single
# turns), one epoch: does it generalise to held-out games where the Bellman form (γ 0.95) did not?
agentprm train-inverse-prm "${inverse_recipe[@]}" --out $S/iprm-g0 --epochs 1 --gamma 0.001
