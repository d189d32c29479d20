"""The body of tests/test_learning.py with the SFT epochs (and model size) as arguments: how few epochs keep its
held-out next-command accuracy clear of the test's bars. usage (repository root, $ALFWORLD_DATA set):
python docs/results/learning-test-epochs/learn_epochs.py EPOCHS [SIZE]
As run at stop 22 on the 2-core AVX2 box (fp32): 6 epochs: loss 0.458, untrained 10.1 %, trained 43.8 %, SFT 127 s;
8 epochs: loss 0.296, untrained 10.1 %, trained 50.6 %, SFT 189 s (the test's bars: loss < 0.5, ≥ 35 % and +20)."""
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, "tests")
import test_learning as T
from agentprm.agents.factory import make_expert
from agentprm.envs.games import find_games, stratified_games
from agentprm.rollout import make_jobs, run_rollouts
from agentprm.scratch import build_scratch_model
from agentprm.train.sft import SFTConfig, train_sft


def main() -> None:
    epochs, size = int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "small"
    tmp = Path(tempfile.mkdtemp())
    t0 = time.time()
    games = find_games("train", [T.TASK])
    test = stratified_games(games, T.TEST_GAMES, seed=123)
    held = {g.game_id for g in test}
    demo_games = stratified_games([g for g in games if g.game_id not in held], T.DEMO_GAMES, seed=0)
    agent, in_env, _ = make_expert("handcoded", demo_games + test)
    run_rollouts(agent, make_jobs(demo_games), tmp / "demos.jsonl", workers=2, show_progress=False, expert=in_env)
    expert_test = [ep for ep in run_rollouts(agent, make_jobs(test), tmp / "t.jsonl", workers=2, show_progress=False,
                                             expert=in_env) if ep.won]
    t1 = time.time()
    base = build_scratch_model([str(tmp / "demos.jsonl")], size, tmp / "base")
    m = train_sft(SFTConfig(demos=[str(tmp / "demos.jsonl")], model=str(base), out=str(tmp / "pi0"), epochs=epochs,
                            lr=2e-3, batch_size=8, grad_accum=1, warmup=0.05, history_window=None, val_fraction=0.0,
                            save_steps=10_000, logging_steps=50, bf16_cpu=True, progress=False))
    t2 = time.time()
    u = T.next_command_accuracy(base, expert_test)
    a = T.next_command_accuracy(tmp / "pi0" / "model", expert_test)
    print(f"epochs {epochs} size {size}: loss {m['sft/train_loss']:.3f} untrained {u:.1%} trained {a:.1%} "
          f"demos {t1 - t0:.0f}s sft {t2 - t1:.0f}s eval {time.time() - t2:.0f}s")


if __name__ == "__main__":
    main()
