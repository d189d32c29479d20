"""A small ALFWorld-native language model, built from scratch: the policy a 2-core CPU can train.

SmolLM2-135M trains at ~150 tokens/s on this project's 2-core machine, so it never gets far enough
there. ALFWorld's language is tiny (a few hundred words: objects, receptacles, a dozen verbs and
fixed sentences), so a model that speaks only that language can be small and fast instead:

- a byte-level BPE tokenizer (`tokenizers`) trained on the demonstrations' own text (tasks,
  observations, commands): common words become single tokens, and nothing is ever out of
  vocabulary (bytes are the fallback). Saved as a `PreTrainedTokenizerFast` with a compact chat
  template: no system prompt, user turns and assistant answers separated by special tokens;
- a Llama-style causal LM from a `transformers` config (sizes in `SIZES`), randomly initialised
  (seeded), with `agentprm_prompt = "episode"` in its config: every consumer (policy, SFT, PRM,
  DPO) then prompts it with the whole episode as a conversation (see `prompts.build_messages`), which
  lets SFT train on every turn of an episode in one packed sequence.

The result is an ordinary HF model folder, so SFT, generate and score modes, the PRM head, online
DPO, Best-of-N and eval all work on it unchanged. `agentprm build-model` and the loop's `base`
stage call `build_scratch_model`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from agentprm.atomic import replace_dir, temp_dir_for
from agentprm.contexts import contexts_from_episode
from agentprm.errors import ConfigError
from agentprm.prompts import format_answer
from agentprm.trajectory import load_episodes

USER, ASSISTANT, END_OF_TURN, EOS, PAD = "<|user|>", "<|assistant|>", "<|im_end|>", "<|endoftext|>", "<pad>"
SPECIAL_TOKENS = [PAD, EOS, USER, ASSISTANT, END_OF_TURN]

CHAT_TEMPLATE = (
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'user' -%}" + USER + "{{ m['content'] }}"
    "{%- elif m['role'] == 'assistant' -%}" + ASSISTANT + "{{ m['content'] }}" + END_OF_TURN +
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}" + ASSISTANT + "{%- endif -%}"
)
"""System messages are dropped (the model knows one game); every turn boundary is a special token, so
a conversation tokenizes as the concatenation of its turns (what packed SFT relies on)."""


@dataclass(frozen=True)
class ScratchSize:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    vocab_size: int = 2048
    max_position_embeddings: int = 2048


SIZES = {
    "tiny": ScratchSize(64, 2, 2, 256, vocab_size=512),  # tests
    "small": ScratchSize(256, 4, 4, 1024),  # ~4.7 M parameters
    "medium": ScratchSize(384, 6, 6, 1536),  # ~15 M parameters
}


def corpus_texts(paths: Iterable[str | Path]) -> Iterator[str]:
    """Every text a prompt or an answer can contain: tasks, observations, answers, admissible commands."""
    for ep in load_episodes(paths, skip_corrupt=True):
        yield f"Task: {ep.task}"
        for ctx, step in zip(contexts_from_episode(ep), ep.steps, strict=True):
            yield ctx.observation
            yield format_answer(step.action)
            yield ", ".join(ctx.admissible_actions)
        yield ep.final_observation


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Any:
    """A byte-level BPE `PreTrainedTokenizerFast` with the chat template above."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, chat_template=CHAT_TEMPLATE,
                                   padding_side="left", clean_up_tokenization_spaces=False)


def build_scratch_model(corpus: list[str], size: str, out: str | Path, seed: int = 0) -> Path:
    """Tokenizer trained on `corpus` (trajectory files/folders) + a seeded random Llama of `size`,
    saved as one model folder (written aside, then renamed into place)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if size not in SIZES:
        raise ConfigError(f"unknown scratch model size {size!r}; choose one of {', '.join(SIZES)}")
    spec = SIZES[size]
    texts = list(corpus_texts(corpus))
    if not texts:
        raise ConfigError(f"no text in {corpus}: build the model from demonstration trajectories")
    tokenizer = train_tokenizer(texts, spec.vocab_size)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        eos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TURN),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
        agentprm_prompt="episode",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out)
    tmp = temp_dir_for(out)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    info = {"size": size, **asdict(spec), "parameters": sum(p.numel() for p in model.parameters()),
            "corpus": [str(c) for c in corpus], "corpus_texts": len(texts), "seed": seed}
    (tmp / "scratch.json").write_text(json.dumps(info, indent=2) + "\n")
    replace_dir(tmp, out)
    return out
