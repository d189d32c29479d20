"""LMPolicy on the tiny model: batching changes nothing, reported logprobs are the model's own,
score mode takes the likelihood argmax."""

from __future__ import annotations

import pytest
import torch

from agentprm.agents.base import Agent
from agentprm.agents.policy import (
    LMPolicy,
    PolicyConfig,
    answer_logprobs,
    encode_prompt,
    prompt_text,
    sequence_logprobs,
)
from agentprm.errors import ConfigError, ModelLoadError
from agentprm.models import resolve_model
from agentprm.prompts import Turn, TurnContext, format_answer

ACTIONS = ["look", "go to desk 1", "go to desk 10", "take mug 1 from desk 1", "open drawer 2"]


def contexts() -> list[TurnContext]:
    """Three contexts of clearly different prompt lengths (left padding gets exercised)."""
    return [
        TurnContext(
            task="put a mug in the sink",
            observation="You are in the kitchen. " * k,
            admissible_actions=ACTIONS[: 2 + k],
            history=[Turn(f"obs {i}", "look") for i in range(k)],
        )
        for k in (0, 2, 3)
    ]


def policy(model_tok: tuple, **kw: object) -> LMPolicy:
    return LMPolicy(*model_tok, PolicyConfig(**({"max_new_tokens": 12, "temperature": 0.0} | kw)))  # type: ignore[arg-type]


def test_is_an_agent(model_tok: tuple) -> None:
    assert isinstance(policy(model_tok), Agent)
    assert policy(model_tok).policy_id == "lm" and policy(model_tok, mode="score").policy_id == "lm:score"


def test_batched_greedy_equals_one_at_a_time(model_tok: tuple) -> None:
    pol, ctxs = policy(model_tok), contexts()
    batched = pol.act(ctxs)
    single = [pol.act([c])[0] for c in ctxs]
    assert [o.raw_output for o in batched] == [o.raw_output for o in single]
    assert len({o.raw_output for o in batched}) == 3, "outputs should differ, else the test proves little"
    for b, s in zip(batched, single, strict=True):
        assert b.logprob == pytest.approx(s.logprob, abs=1e-3)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_generated_logprob_is_teacher_forced_logprob(model_tok: tuple, temperature: float) -> None:
    """Whatever the sampling temperature, the reported logprob is under the temperature-1 model."""
    pol = policy(model_tok, temperature=temperature, top_p=0.9)
    prompts = [prompt_text(pol.tokenizer, pol.messages(c)) for c in contexts()]
    gens = pol.generate(prompts)
    with torch.no_grad():
        forced = sequence_logprobs(
            pol.model,
            [encode_prompt(pol.tokenizer, pol.messages(c)) for c in contexts()],
            [g.token_ids for g in gens],
            pol.tokenizer.pad_token_id,
        )
    assert forced.tolist() == pytest.approx([g.logprob for g in gens], abs=1e-3)
    assert all(len(g.token_ids) == 12 or g.finished for g in gens)


def test_answer_logprobs_order_and_chunking(model_tok: tuple) -> None:
    model, tok = model_tok
    msgs = [policy(model_tok).messages(c) for c in contexts()]
    answers = [format_answer(a) for a in ACTIONS[:3]]
    with torch.no_grad():
        together = answer_logprobs(model, tok, msgs, answers, batch_size=2)
        alone = [answer_logprobs(model, tok, [m], [a])[0].item() for m, a in zip(msgs, answers, strict=True)]
    assert together.tolist() == pytest.approx(alone, abs=1e-4)


def test_sample_is_seeded_and_shaped(model_tok: tuple) -> None:
    a = policy(model_tok, temperature=1.0, seed=3).sample(contexts()[:2], 4)
    b = policy(model_tok, temperature=1.0, seed=3).sample(contexts()[:2], 4)
    assert [len(x) for x in a] == [4, 4]
    assert [[o.raw_output for o in x] for x in a] == [[o.raw_output for o in x] for x in b]
    assert len({o.raw_output for o in a[0]}) > 1


def test_samples_from_a_shared_prompt_cache_equal_separate_prompts(model_tok: tuple) -> None:
    # n > 1 reads each prompt once (KV cache repeated n times); greedy answers and their logprobs must
    # be exactly those of the prompt read alone, and sampled answers must be the model's own logprobs
    one = policy(model_tok, temperature=0.0).sample(contexts(), 1)
    three = policy(model_tok, temperature=0.0).sample(contexts(), 3)
    for single, many in zip(one, three, strict=True):
        for out in many:
            assert out.raw_output == single[0].raw_output
            assert out.logprob == pytest.approx(single[0].logprob, abs=1e-4)
    pol = policy(model_tok, temperature=1.0, seed=5)
    prompts = [prompt_text(pol.tokenizer, pol.messages(c)) for c in contexts()]
    gens = pol.generate(prompts, num_samples=3)
    with torch.no_grad():
        prompt_ids = [encode_prompt(pol.tokenizer, pol.messages(c)) for c in contexts() for _ in range(3)]
        forced = sequence_logprobs(pol.model, prompt_ids, [g.token_ids for g in gens], pol.tokenizer.pad_token_id)
    assert forced.tolist() == pytest.approx([g.logprob for g in gens], abs=1e-3)


def _expected_argmax(model_tok: tuple, ctx: TurnContext) -> tuple[str, float]:
    """Score each action alone (batch of one), independently of the batched score path."""
    model, tok = model_tok
    msgs = policy(model_tok).messages(ctx)
    with torch.no_grad():
        lps = [answer_logprobs(model, tok, [msgs], [format_answer(a)])[0].item() for a in ctx.admissible_actions]
    k = max(range(len(lps)), key=lps.__getitem__)
    return ctx.admissible_actions[k], lps[k]


def test_score_mode_picks_likelihood_argmax(model_tok: tuple) -> None:
    outs = policy(model_tok, mode="score", batch_size=3).act(contexts())
    for ctx, out in zip(contexts(), outs, strict=True):
        action, lp = _expected_argmax(model_tok, ctx)
        assert (out.action, out.matched) == (action, True)
        assert out.logprob == pytest.approx(lp, abs=1e-3)


def test_score_mode_greedy_twin_and_sampler_read_the_same_turns_once(model_tok: tuple, monkeypatch) -> None:
    """Best-of-N asks the greedy twin, then the sampler, for the same turns: one scoring pass, the same
    log-probs; a later call by the one that scored them (its weights may have changed) scores again."""
    import agentprm.agents.policy as policy_module

    calls: list[int] = []
    real = policy_module.answers_logprobs
    monkeypatch.setattr(policy_module, "answers_logprobs", lambda *a: calls.append(1) or real(*a))
    sampler = policy(model_tok, mode="score", temperature=1.0)
    twin = sampler.greedy()
    firsts = twin.sample(contexts(), 1)
    passes = len(calls)
    rest = sampler.sample(contexts(), 3)
    assert len(calls) == passes  # read once
    for ctx, first, samples in zip(contexts(), firsts, rest, strict=True):
        assert first[0].action == _expected_argmax(model_tok, ctx)[0]
        lps = {o.action: o.logprob for o in samples}
        assert all(lp == pytest.approx(_lp(model_tok, ctx, a), abs=1e-3) for a, lp in lps.items())
    sampler.sample(contexts(), 3)
    sampler.sample(contexts(), 3)
    assert len(calls) == 3 * passes  # its own log-probs are never reused


def _lp(model_tok: tuple, ctx: TurnContext, action: str) -> float:
    model, tok = model_tok
    with torch.no_grad():
        return answer_logprobs(model, tok, [policy(model_tok).messages(ctx)], [format_answer(action)])[0].item()


def test_score_mode_follows_training(tiny_model: str) -> None:
    """Teach the model one answer; score mode must switch to it (it was not the argmax before)."""
    model, tok = resolve_model(tiny_model, device="cpu")
    pol = LMPolicy(model, tok, PolicyConfig(mode="score"))
    ctx = contexts()[2]
    before = pol.act([ctx])[0].action
    target = next(a for a in reversed(ctx.admissible_actions) if a != before)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        loss = -answer_logprobs(model, tok, [pol.messages(ctx)], [format_answer(target)]).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert pol.act([ctx])[0].action == target


def test_bad_config_and_model_path(tmp_path: object) -> None:
    with pytest.raises(ConfigError):
        PolicyConfig(mode="beam")
    with pytest.raises(ConfigError):
        PolicyConfig(temperature=-1)
    with pytest.raises(ModelLoadError):
        LMPolicy.from_spec(str(tmp_path) + "/missing")


def test_static_cache_path_matches_dynamic(model_tok: tuple) -> None:
    """The CUDA default (static cache, prompts padded to a multiple of 64) gives the same answers;
    checked here on CPU, where generate does not compile it."""
    dynamic = policy(model_tok, static_cache=False).act(contexts())
    static = policy(model_tok, static_cache=True).act(contexts())
    assert [o.raw_output for o in static] == [o.raw_output for o in dynamic]
    assert [o.logprob for o in static] == pytest.approx([o.logprob for o in dynamic], abs=1e-3)


def test_answers_after_a_shared_prompt_match_pairs_in_value_and_gradient(model_tok: tuple) -> None:
    # DPO trains through answers_logprobs (each prompt read once): its values and its gradients must be
    # those of sequence_logprobs on the (prompt, answer) pairs
    from agentprm.agents.policy import answers_logprobs

    model, tok = model_tok
    prompts = [encode_prompt(tok, policy(model_tok).messages(c)) for c in contexts()]
    answers = [[tok(a, add_special_tokens=False)["input_ids"] for a in ACTIONS[:k]] for k in (1, 3, 2)]
    flat_p = [p for p, group in zip(prompts, answers, strict=True) for _ in group]
    flat_a = [a for group in answers for a in group]
    shared = answers_logprobs(model, prompts, answers, tok.pad_token_id)
    grads = torch.autograd.grad(shared.sum(), [p for p in model.parameters() if p.requires_grad])
    pairs = sequence_logprobs(model, flat_p, flat_a, tok.pad_token_id)
    expected = torch.autograd.grad(pairs.sum(), [p for p in model.parameters() if p.requires_grad])
    assert shared.tolist() == pytest.approx(pairs.tolist(), abs=1e-4)
    for g, e in zip(grads, expected, strict=True):
        assert torch.allclose(g, e, atol=1e-4, rtol=1e-3)
