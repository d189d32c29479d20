"""Policy/critic prompts (jinja2 templates beside this file) and the answer parser.

The same text goes to the policy (which continues it with an answer) and to the PRM (which reads
prompt + answer and scores it), so a state–action pair means one string everywhere.

Two prompt styles, chosen by the model (its config's `agentprm_prompt`, see `prompt_style`):
- "react" (pretrained chat LMs such as SmolLM2; the default): a system prompt explaining the game,
  then ONE user message with the task, the last `history_window` turns, the observation and the
  candidate (admissible) actions.
- "episode" (models built for ALFWorld from scratch, `agentprm.scratch`): the episode itself as a
  conversation, compact: the first user message is the task and the first observation, then one
  assistant message per action taken and one user message per observation; no system prompt, no
  candidate list. Turn t's prompt is then a prefix of turn t+1's, so SFT can train on every turn of
  an episode in one sequence.

Answer format: `REASON: ... ACTION: ...`, the reason optional.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Turn:
    observation: str
    action: str


@dataclass
class TurnContext:
    """Everything the agent may condition on at one turn."""

    task: str
    observation: str
    admissible_actions: list[str]
    history: list[Turn] = field(default_factory=list)
    game_id: str = ""
    """Which game; scripted agents (the expert) look their plan up by it."""
    prefix_len: int = 0
    """Actions replayed before turn 0 (reset-distribution starts); they are the first turns of `history`."""
    expert_action: str | None = None
    """The environment's expert's next action here, when the episode runs with one (demos, DAgger
    labels); never shown to a policy."""
    episode_key: str = ""
    """Names the episode (id and job seed) for seeded sampling (agents.seeding): a policy's draws at a
    turn then depend on the episode and turn alone, not on the batch. Empty: not from a rollout."""


@cache
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=False, autoescape=False
    )


def render(name: str, **values: object) -> str:
    return _env().get_template(f"{name}.jinja").render(**values).strip()


PROMPT_STYLES = ("react", "episode")


def prompt_style(model: object) -> str:
    """The prompt style a model was built for (its config's `agentprm_prompt`; "react" if unset)."""
    style = getattr(getattr(model, "config", model), "agentprm_prompt", None) or "react"
    if style not in PROMPT_STYLES:
        raise ValueError(f"model config has agentprm_prompt={style!r}; expected one of {PROMPT_STYLES}")
    return style


def build_messages(
    ctx: TurnContext, history_window: int | None = None, explore: bool = False, style: str = "react"
) -> list[dict[str, str]]:
    """Chat messages for one turn. `history_window`: keep the last k turns (None: all).
    `explore` adds the steered-exploration hint (sample with it, train without it; "react" only).
    `style`: see the module docstring."""
    history = ctx.history if history_window is None else ctx.history[-history_window:] if history_window else []
    if style == "episode":
        return episode_messages(ctx.task, history, ctx.observation)
    system = render("system")
    if explore:
        system += "\n" + render("explore")
    user = render(
        "turn",
        task=ctx.task,
        history=history,
        observation=ctx.observation,
        actions=ctx.admissible_actions,
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def episode_messages(task: str, history: Sequence[Turn], observation: str) -> list[dict[str, str]]:
    """The "episode" style: user (task + first observation), assistant (answer), user (observation)..."""
    observations = [t.observation for t in history] + [observation]
    messages = []
    for i, text in enumerate(observations):
        messages.append({"role": "user", "content": f"Task: {task}\n{text}" if i == 0 else text})
        if i < len(history):
            messages.append({"role": "assistant", "content": format_answer(history[i].action)})
    return messages


def format_answer(action: str, reason: str | None = None) -> str:
    return f"REASON: {reason}\nACTION: {action}" if reason else f"ACTION: {action}"


@dataclass(frozen=True)
class ParsedAnswer:
    action: str
    """An admissible command when one matched, else the raw command text (sent as is)."""
    reason: str | None
    matched: bool
    """True when `action` is exactly one of the admissible commands."""


_MARKER_RE = re.compile(r"\b(reason|action)\s*:", re.IGNORECASE)
"""A `REASON:`/`ACTION:` marker as a word of its own (so `REACTION:` is none). Scanned once, left to
right: the parser stays linear in the answer's length, however much whitespace a model emits."""
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize(command: str) -> str:
    """Case, spaces and punctuation folded away, for matching model text to admissible commands."""
    return " ".join(command.lower().translate(_PUNCT).split())


def fold_invisible(text: str) -> str:
    """`text` without invisible characters: control characters other than whitespace (NUL, ...) and
    format characters (zero-width space and joiners, word joiner, BOM, soft hyphen, bidi marks).
    A model or server that slips one into `ACTION:` or a command would otherwise hide the marker
    or spoil an exact match while the text looks right to anyone reading it."""
    return "".join(c for c in text if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf"))


def parse_answer(raw: str, admissible: Sequence[str]) -> ParsedAnswer:
    """The command in a model answer. Takes the text after the last `ACTION:` (first line of it);
    without that marker, the first non-empty line that is not a REASON line. The reason is the text
    between the first `REASON:` and the next `ACTION:`. An exact match after `normalize` maps to the
    admissible spelling; otherwise the raw command goes to the environment, which answers "Nothing
    happens." and charges a step. Empty output becomes "look". Invisible characters are folded away
    first (`fold_invisible`)."""
    text = fold_invisible(raw)
    markers = list(_MARKER_RE.finditer(text))
    actions = [m for m in markers if m.group(1).lower() == "action"]
    reason = None
    reason_m = next((m for m in markers if m.group(1).lower() == "reason"), None)
    if reason_m is not None:
        end = next((m.start() for m in actions if m.start() > reason_m.start()), len(text))
        reason = text[reason_m.end() : end].strip() or None
    if actions:
        # The last marker wins, so `ACTION: ACTION: look` sends `look`.
        rest = text[actions[-1].end() :].strip()
        candidate = rest.splitlines()[0] if rest else ""
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.lower().startswith("reason")]
        candidate = lines[0] if lines else ""
    candidate = candidate.strip().strip("\"'`").rstrip(".").strip()
    by_norm = {normalize(a): a for a in admissible}
    hit = by_norm.get(normalize(candidate))
    if hit is not None:
        return ParsedAnswer(hit, reason, True)
    return ParsedAnswer(candidate or "look", reason, False)
