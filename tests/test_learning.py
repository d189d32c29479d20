"""Learning, not only plumbing: a few minutes of SFT on real ALFWorld demonstrations of one task type
must win a clear share of held-out games of that type. Fails if imitation breaks anywhere along
demos → tokenizer/model from scratch → packed SFT → prefix-cached constrained decoding → rollouts.

Random admissible play wins none of these games in 30 steps; the threshold leaves room for noise.
"""

from __future__ import annotations

from pathlib import Path

from agentprm.agents.factory import make_expert
from agentprm.agents.policy import LMPolicy, PolicyConfig
from agentprm.envs.games import find_games, stratified_games
from agentprm.rollout import make_jobs, run_rollouts
from agentprm.scratch import build_scratch_model
from agentprm.train.sft import SFTConfig, train_sft

TASK = "look_at_obj_in_light"
DEMO_GAMES, TEST_GAMES, MIN_WON = 80, 12, 4


def test_a_few_minutes_of_sft_wins_held_out_games(alfworld_root: Path, tmp_path: Path) -> None:
    games = find_games("train", [TASK])
    test = stratified_games(games, TEST_GAMES, seed=123)
    held = {g.game_id for g in test}
    demo_games = stratified_games([g for g in games if g.game_id not in held], DEMO_GAMES, seed=0)
    agent, in_env = make_expert("handcoded", demo_games)
    demos = run_rollouts(agent, make_jobs(demo_games), tmp_path / "demos.jsonl", workers=2, show_progress=False,
                         expert=in_env)
    assert sum(ep.won for ep in demos) >= DEMO_GAMES // 2

    base = build_scratch_model([str(tmp_path / "demos.jsonl")], "small", tmp_path / "base")
    metrics = train_sft(SFTConfig(demos=[str(tmp_path / "demos.jsonl")], model=str(base), out=str(tmp_path / "pi0"),
                                  epochs=25, lr=2e-3, batch_size=8, grad_accum=1, warmup=0.05, history_window=None,
                                  val_fraction=0.0, save_steps=10_000, logging_steps=50, bf16_cpu=True,
                                  progress=False))
    assert metrics["sft/train_loss"] < 0.2

    policy = LMPolicy.from_spec(str(tmp_path / "pi0" / "model"), PolicyConfig(
        mode="constrained", temperature=0.0, history_window=None, max_new_tokens=24, cpu_bf16=True))
    episodes = run_rollouts(policy, make_jobs(test), tmp_path / "test.jsonl", workers=2, show_progress=False)
    won = sum(ep.won for ep in episodes)
    assert won >= MIN_WON, f"π0 won {won}/{TEST_GAMES} held-out {TASK} games (need {MIN_WON})"
