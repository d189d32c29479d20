"""The ALFWorld-native model built from scratch, its "episode" prompts, and packed SFT/PRM training:
packing must change the cost, never the numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agentprm.agents.policy import LMPolicy, PolicyConfig, encode_answer, encode_prompt
from agentprm.contexts import contexts_from_episode
from agentprm.models import load_causal_lm, load_tokenizer
from agentprm.prompts import build_messages, format_answer, prompt_style
from agentprm.scratch import SIZES, build_scratch_model
from agentprm.trajectory import Episode, Step, TrajectoryWriter

ROOM = "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a desk 1 and a fridge 1."
PLAN = [
    ("go to desk 1", "You arrive at desk 1. On the desk 1, you see a mug 1, and a pen 2."),
    ("take mug 1 from desk 1", "You pick up the mug 1 from the desk 1."),
    ("go to cabinet 1", "You arrive at cabinet 1. The cabinet 1 is closed."),
    ("open cabinet 1", "You open the cabinet 1. The cabinet 1 is open. In it, you see nothing."),
    ("move mug 1 to cabinet 1", "You move the mug 1 to the cabinet 1."),
]


def episode(i: int, turns: int, won: bool, expert: list[str | None] | None = None) -> Episode:
    obs = [ROOM] + [o for _, o in PLAN]
    steps = [Step(observation=obs[t], admissible_actions=sorted({PLAN[t][0], "look", "go to fridge 1"}),
                  action=PLAN[t][0], reward=float(won and t == turns - 1), done=t == turns - 1,
                  expert_action=expert[t] if expert else None) for t in range(turns)]
    return Episode(episode_id=f"g{i}#0", game_id=f"train/put_mug-{i}/trial", split="train",
                   task_type="pick_and_place_simple", task="put a mug in cabinet.", steps=steps, won=won,
                   final_observation=obs[turns])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demos") / "demos.jsonl"
    with TrajectoryWriter(path) as w:
        for i in range(6):
            w.write(episode(i, 5, won=True))
    return path


@pytest.fixture(scope="module")
def scratch(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_scratch_model([str(corpus)], "tiny", tmp_path_factory.mktemp("m") / "base", seed=0))


def test_built_model_is_an_ordinary_hf_folder_with_episode_prompts(scratch: str) -> None:
    model, tok = load_causal_lm(scratch), load_tokenizer(scratch)
    assert prompt_style(model) == "episode" and model.config.hidden_size == SIZES["tiny"].hidden_size
    assert len(tok) <= SIZES["tiny"].vocab_size
    text = "ACTION: take mug 1 from desk 1"
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text  # byte-level: exact round trip
    assert "Task: put a mug in cabinet." in tok.apply_chat_template(
        build_messages(contexts_from_episode(episode(0, 2, True))[1], None, style="episode"),
        tokenize=False, add_generation_prompt=True)


def test_each_turns_prompt_and_answer_prefix_the_next_turns_prompt(scratch: str) -> None:
    tok = load_tokenizer(scratch)
    ctxs = contexts_from_episode(episode(0, 5, True))
    for t in range(4):
        now = encode_prompt(tok, build_messages(ctxs[t], None, style="episode"))
        answer = encode_answer(tok, format_answer(PLAN[t][0]))
        later = encode_prompt(tok, build_messages(ctxs[t + 1], None, style="episode"))
        assert later[: len(now) + len(answer)] == now + answer


def test_packed_sft_rows_give_the_same_loss_as_one_row_per_turn(scratch: str) -> None:
    from transformers import DataCollatorForSeq2Seq

    from agentprm.train.sft import answer_only_loss, episodes_to_rows

    tok = load_tokenizer(scratch)
    tok.padding_side = "left"
    model = load_causal_lm(scratch)
    eps = [episode(0, 5, True), episode(1, 3, True), episode(2, 4, False)]
    packed = episodes_to_rows(tok, eps, None, "episode", "taken", pack=True)
    single = episodes_to_rows(tok, eps, None, "episode", "taken", pack=False)
    assert len(packed) == 2 and len(single) == 8  # the lost episode gives nothing with "taken" labels
    collate = DataCollatorForSeq2Seq(tok, padding=True)

    def loss(rows: list[dict]) -> float:
        batch = collate([{k: v for k, v in r.items() if k != "game_id"} for r in rows])
        with torch.no_grad():
            return answer_only_loss(model, batch)[0].item()

    assert loss(packed) == pytest.approx(loss(single), rel=1e-4)


def test_dagger_turns_labelled_otherwise_become_rows_of_their_own(scratch: str) -> None:
    from agentprm.train.sft import episodes_to_rows

    tok = load_tokenizer(scratch)
    relabelled = episode(0, 4, False, expert=["go to desk 1", "look", None, "open cabinet 1"])
    rows = episodes_to_rows(tok, [relabelled], None, "episode", "expert", pack=True)
    # turns 0 and 3 agree with the action taken: one packed row; turn 1 disagrees: its own row; turn 2 unlabelled
    assert len(rows) == 2
    packed, own = rows
    assert sum(t != -100 for t in packed["labels"]) == len(encode_answer(tok, format_answer(PLAN[0][0]))) + len(
        encode_answer(tok, format_answer(PLAN[3][0])))
    assert [t for t in own["labels"] if t != -100] == encode_answer(tok, format_answer("look"))


def test_packed_prm_examples_score_every_turn_as_one_row_each(scratch: str, corpus: Path, tmp_path: Path) -> None:
    from agentprm.targets import TargetsConfig, build_targets, read_rows
    from agentprm.train.prm import PRM, PRMConfig, _batch_loss, _examples

    build_targets(TargetsConfig(rollouts=[str(corpus)], out=str(tmp_path / "t"), val_fraction=0.0))
    rows = read_rows(tmp_path / "t" / "train.parquet")
    prm = PRM.from_spec(scratch, history_window=None)
    with torch.no_grad():
        torch.nn.init.normal_(prm.head.weight, std=0.5)
    cfg = dict(data=str(tmp_path / "t"), out=str(tmp_path / "p"), model=scratch, history_window=None)
    packed = _examples(prm, PRMConfig(**cfg, pack=True), rows, [])
    single = _examples(prm, PRMConfig(**cfg, pack=False), rows, [])
    assert sum(len(labels) for _, labels in packed) == len(single) == len(rows) == 5  # 6 identical demos: 5 rows
    assert len(packed) == 1
    with torch.no_grad():
        assert _batch_loss(prm, prm, packed, "soft-bce")[0].item() == pytest.approx(
            _batch_loss(prm, prm, single, "soft-bce")[0].item(), rel=1e-4)


def test_scratch_policy_acts_in_every_mode(scratch: str) -> None:
    ctx = contexts_from_episode(episode(0, 3, True))[2]
    for mode in ("generate", "constrained", "score"):
        pol = LMPolicy.from_spec(scratch, PolicyConfig(mode=mode, temperature=0.0, history_window=None,
                                                       max_new_tokens=16))
        (out,) = pol.act([ctx])
        if mode != "generate":
            assert out.action in ctx.admissible_actions and out.matched


@pytest.mark.parametrize("mode", ["generate", "constrained", "score"])
def test_prefix_cached_decoding_equals_reading_every_prompt_whole(scratch: str, mode: str) -> None:
    # turn after turn, the cached policy reads only each prompt's new tokens; answers and log-probs
    # must be those of the policy that reads every prompt whole (batch rows of different lengths);
    # score mode scores every admissible answer on top of the cache
    model = load_causal_lm(scratch)
    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    tok = load_tokenizer(scratch)
    episodes = [contexts_from_episode(episode(i, 5, True)) for i in range(2)] + [
        contexts_from_episode(episode(9, 3, True))]
    cfg = dict(mode=mode, temperature=0.0, history_window=None, max_new_tokens=10)
    cached = LMPolicy(model, tok, PolicyConfig(**cfg, prefix_cache=True))
    plain = LMPolicy(model, tok, PolicyConfig(**cfg, prefix_cache=False))
    for t in range(5):
        ctxs = [e[t] for e in episodes if t < len(e)]
        a, b = cached.act(ctxs), plain.act(ctxs)
        assert [o.raw_output for o in a] == [o.raw_output for o in b]
        assert [o.logprob for o in a] == pytest.approx([o.logprob for o in b], abs=1e-4)
    # every turn after the first found its previous prompt (identical prompts share one entry)
    assert cached._store.hits == 3 + 3 + 2 + 2 and len(cached._store.entries) == 1


def test_prefix_cached_score_mode_with_rows_cached_to_different_lengths(scratch: str) -> None:
    # episode B starts two turns after A and has a longer task: each batch mixes a row read whole with rows
    # whose cached prefixes differ in length; every admissible answer's log-prob must be the uncached one
    model = load_causal_lm(scratch)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    tok = load_tokenizer(scratch)
    a = contexts_from_episode(episode(0, 5, True))
    b = contexts_from_episode(episode(1, 5, True).model_copy(update={"task": "put a clean mug in the cabinet 1."}))
    cfg = dict(mode="score", temperature=1.0, history_window=None, seed=3)
    cached = LMPolicy(model, tok, PolicyConfig(**cfg, prefix_cache=True))
    plain = LMPolicy(model, tok, PolicyConfig(**cfg, prefix_cache=False))
    for t in range(7):
        ctxs = ([a[t]] if t < 5 else []) + ([b[t - 2]] if t >= 2 else [])
        x, y = cached.sample(ctxs, 3), plain.sample(ctxs, 3)
        assert [[o.action for o in r] for r in x] == [[o.action for o in r] for r in y]
        assert [o.logprob for r in x for o in r] == pytest.approx([o.logprob for r in y for o in r], abs=1e-4)
    assert cached._store.hits == 4 + 4


def test_max_relabels_keeps_the_first_deviations_only(scratch: str) -> None:
    from agentprm.train.sft import episodes_to_rows

    tok = load_tokenizer(scratch)
    relabelled = episode(0, 5, False, expert=["look", "look", "look", "open cabinet 1", "look"])
    all_rows = episodes_to_rows(tok, [relabelled], None, "episode", "expert", pack=True)
    first_two = episodes_to_rows(tok, [relabelled], None, "episode", "expert", pack=True, max_relabels=2)
    assert len(all_rows) == 1 + 4 and len(first_two) == 1 + 2  # turn 3 agrees: it stays in the packed row
    assert [r["input_ids"] for r in first_two[1:]] == [r["input_ids"] for r in all_rows[1:3]]


def test_cached_decoding_draws_do_not_depend_on_the_batch(scratch: str) -> None:
    """The prefix-cached decoder samples each row from its own seeded stream (agents.seeding)."""
    import dataclasses

    cfg = PolicyConfig(mode="generate", temperature=3.0, history_window=None, max_new_tokens=12, seed=2)
    a = dataclasses.replace(contexts_from_episode(episode(1, 4, True))[3], episode_key="g1#0/0")
    b = dataclasses.replace(contexts_from_episode(episode(2, 3, True))[2], episode_key="g2#0/0")
    pol = LMPolicy.from_spec(scratch, cfg)
    assert pol._store is not None  # the cached decoder is the one under test
    alone = [o.raw_output for o in pol.sample([b], 3)[0]]
    mixed = [o.raw_output for o in LMPolicy.from_spec(scratch, cfg).sample([a, b], 3)[1]]
    assert mixed == alone and len(set(alone)) > 1
