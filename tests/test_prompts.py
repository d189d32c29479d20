"""Prompt rendering and the answer parser."""

from __future__ import annotations

import time

import pytest

from agentprm.prompts import Turn, TurnContext, build_messages, format_answer, normalize, parse_answer

ADMISSIBLE = ["go to fridge 1", "take apple 1 from countertop 2", "look", "move apple 1 to fridge 1"]


@pytest.mark.parametrize(
    ("raw", "action", "reason", "matched"),
    [
        ("REASON: cold things go there.\nACTION: go to fridge 1", "go to fridge 1", "cold things go there.", True),
        ("ACTION: Go To Fridge 1.", "go to fridge 1", None, True),
        ("action:   take apple 1 from countertop 2  ", "take apple 1 from countertop 2", None, True),
        ('ACTION: "look"', "look", None, True),
        ("ACTION: move apple 1 to fridge 1\nACTION: look", "look", None, True),  # the last marker wins
        ("ACTION: go to fridge 1\nObservation: you arrive", "go to fridge 1", None, True),
        ("look", "look", None, True),  # no marker: first line
        ("REASON: hmm\nopen the fridge", "open the fridge", "hmm\nopen the fridge", False),
        ("ACTION: put apple 1 in fridge 1", "put apple 1 in fridge 1", None, False),  # raw goes to the env
        ("", "look", None, False),
        ("ACTION: go to fridge 10", "go to fridge 10", None, False),  # no fuzzy matching to a neighbour
        ("ACTION: ACTION: look", "look", None, True),  # a repeated marker is not part of the command
        ("action:action: Go To Fridge 1", "go to fridge 1", None, True),
        ("REACTION: go to fridge 1", "REACTION: go to fridge 1", None, False),  # a marker is a whole word
        ("REASON: the reaction: fast\nACTION: look", "look", "the reaction: fast", True),
        ("ACT\u200bION: go to fridge 1", "go to fridge 1", None, True),  # zero-width characters fold away
        ("ACTION:\ufeff go to\u200b fridge\u200d 1\u2060", "go to fridge 1", None, True),
        ("\ufeffREASON: cold\u200c\nACTION: lo\x00ok", "look", "cold", True),  # BOM, NUL
        ("ACTION: take apple 1 from counter\u00adtop 2", "take apple 1 from countertop 2", None, True),
    ],
)
def test_parse_answer(raw, action, reason, matched):
    got = parse_answer(raw, ADMISSIBLE)
    assert (got.action, got.matched) == (action, matched)
    if reason is not None:
        assert got.reason == reason


def test_parse_answer_is_linear_in_whitespace():
    # The old REASON regex rescanned the whitespace run from every position in it: ~5 s here.
    raw = "REASON: a" + " " * 30_000 + "b\nACTION: look"
    start = time.perf_counter()
    got = parse_answer(raw, ADMISSIBLE)
    elapsed = time.perf_counter() - start
    assert (got.action, got.reason) == ("look", "a" + " " * 30_000 + "b")
    assert elapsed < 0.5, f"parse_answer took {elapsed:.2f}s on 30k spaces"


def test_normalize_folds_case_spaces_punctuation():
    assert normalize("  Go  to, Fridge-1! ") == "go to fridge 1"


def test_messages_hold_task_history_window_and_candidates():
    ctx = TurnContext(
        task="put a cool apple in fridge.",
        observation="You arrive at fridge 1.",
        admissible_actions=["open fridge 1", "look"],
        history=[Turn(f"obs {i}", f"act {i}") for i in range(5)],
    )
    system, user = build_messages(ctx, history_window=2)
    assert system["role"] == "system" and "ACTION:" in system["content"] and "move <object>" in system["content"]
    text = user["content"]
    assert "Task: put a cool apple in fridge." in text
    assert "act 4" in text and "act 3" in text and "act 2" not in text
    assert text.endswith("Candidate actions: open fridge 1, look")
    assert "act 0" in build_messages(ctx)[1]["content"]
    assert "act" not in build_messages(ctx, history_window=0)[1]["content"].replace("actions", "")
    assert "Explore" in build_messages(ctx, explore=True)[0]["content"]
    assert format_answer("look") == "ACTION: look"
    assert format_answer("look", "why not") == "REASON: why not\nACTION: look"
