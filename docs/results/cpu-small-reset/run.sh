# The follow-up iteration of docs/results/cpu-small (run from the repository root; it was run from a snapshot
# of commit 0adbd6f under `script -f`, killed once with kill -9 during its rollouts and resumed).
agentprm train --config configs/cpu-small.yaml --set run_dir=runs/cpu-small-reset \
  --set policy=runs/cpu-small/pi0/model --set rollout.reset_fraction=0.5 \
  --set prm.batch_size=4 --set prm.epochs=3 --set 'prm.extra={max_length: 2048, eval_batch_size: 64, eval_each_epoch: false}' \
  --set policy_step.lr=3.0e-5 --set 'eval.best_of=[4]'
