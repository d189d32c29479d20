"""Evaluation tables: a failed episode (no outcome) is reported as failed, never counted as a loss."""

from __future__ import annotations

from rich.console import Console

from agentprm.evaluation import markdown_table, success_table, summarize
from agentprm.trajectory import Episode, Step


def episode(i: int, task_type: str, won: bool = False, failed: str | None = None, steps: int = 2,
            attempts: int = 1) -> Episode:
    return Episode(episode_id=f"g{i}#0", game_id=f"g{i}", split="valid_seen", task_type=task_type, task="t",
                   steps=[Step(observation="o", admissible_actions=["a"], action="a")] * steps, won=won,
                   failed=failed, attempts=attempts)


PICK, LOOK = "pick_and_place_simple", "look_at_obj_in_light"
CRASH = "episode lost with worker 0: worker 0 crashed (exit code -9)"


def test_failed_episodes_are_left_out_of_the_rates_and_counted_apart():
    eps = [episode(0, PICK, won=True, steps=4), episode(1, PICK, steps=8), episode(2, PICK, failed=CRASH, steps=1,
           attempts=3), episode(3, LOOK, won=True, attempts=2), episode(4, LOOK, failed=CRASH, steps=0, attempts=3)]
    s = summarize(eps)
    # 2 won of the 3 finished (not of 5); #actions (4 + 8 + 2) / 3
    assert (s["eval/episodes"], s["eval/finished"], s["eval/failed"], s["eval/won"]) == (5, 3, 2, 2)
    assert s["eval/success"] == 2 / 3 and s["eval/mean_actions"] == 14 / 3 and s["eval/retried"] == 3
    assert s["per_task_type"]["Pick"] == {"episodes": 3, "failed": 1, "won": 1, "success": 0.5, "mean_actions": 6.0,
                                          "non_admissible_rate": 0.0, "empty_answers": 0}
    assert s["per_task_type"]["Look"]["success"] == 1.0


def test_tables_show_a_failed_column_and_a_warning_when_an_episode_failed():
    eps = [episode(0, PICK, won=True), episode(1, PICK), episode(2, PICK, failed=CRASH),
           episode(3, LOOK, failed=CRASH)]
    md = markdown_table(summarize(eps), "expert")
    assert "| task | success % | won | failed | #actions | non-adm. % | empty |" in md
    assert "| All | 50.0 | 1/2 | 2 | 2.0 | 0.0 | 0 |" in md
    assert "| Look | – | 0/0 | 1 | 0.0 | 0.0 | 0 |" in md  # nothing finished: no rate, not 0 %
    assert "2 of 4 episodes failed" in md and "over the 2 that finished" in md and "Rerun" in md
    console = Console(width=200, record=True)
    console.print(success_table(summarize(eps), "expert"))
    text = console.export_text()
    assert "failed" in text.splitlines()[2] and "1/2" in text and "warning: 2 of 4 episodes failed" in text


def test_tables_without_failures_keep_their_columns():
    s = summarize([episode(0, PICK, won=True), episode(1, PICK)])
    md = markdown_table(s)
    assert md.splitlines()[0] == "| task | success % | won | #actions | non-adm. % | empty |"
    assert "| All | 50.0 | 1/2 | 2.0 | 0.0 | 0 |" in md
    assert "failed" not in md and "warning" not in md


def test_empty_answers_are_counted_and_are_not_admissible():
    """Hand values: 4 steps, one empty answer and one command the game refused: 2/4 non-admissible."""
    ok = Step(observation="o", admissible_actions=["look"], action="look", raw_output="look")
    refused = Step(observation="o", admissible_actions=["look"], action="fly", raw_output="fly", admissible=False)
    empty = Step(observation="o", admissible_actions=["look"], action="look", raw_output="  \n", admissible=False)
    ep = Episode(episode_id="g#0", game_id="g", split="valid_seen", task_type=PICK, task="t",
                 steps=[ok, refused, empty, ok])
    s = summarize([ep])
    assert s["eval/empty_answers"] == 1 and s["eval/non_admissible_rate"] == 0.5
    assert "| All | 0.0 | 0/1 | 4.0 | 50.0 | 1 |" in markdown_table(s)


def test_expert_agreement_is_the_share_of_labelled_turns_where_the_agent_did_what_the_expert_said():
    """Hand values: 5 labelled turns of which 2 agree (one in a failed episode, left out), 1 unlabelled turn."""
    def step(action: str, label: str | None) -> Step:
        return Step(observation="o", admissible_actions=["a", "b"], action=action, expert_action=label)

    eps = [Episode(episode_id="g0#0", game_id="g0", split="train", task_type=PICK, task="t",
                   steps=[step("a", "a"), step("a", "b"), step("b", None)]),
           Episode(episode_id="g1#0", game_id="g1", split="train", task_type=LOOK, task="t",
                   steps=[step("b", "b"), step("a", "b"), step("b", "a")], won=True),
           Episode(episode_id="g2#0", game_id="g2", split="train", task_type=LOOK, task="t",
                   steps=[step("a", "a")], failed=CRASH)]
    s = summarize(eps)
    assert s["eval/expert_labelled"] == 5 and s["eval/expert_agreement"] == 2 / 5
    assert "eval/expert_agreement" not in summarize([episode(0, PICK, won=True)])  # no labels: no figure


def test_read_summary_takes_what_summarize_wrote_and_names_what_a_hand_made_one_lacks(tmp_path):
    import json
    import re

    import pytest

    from agentprm.errors import CorruptRecordError
    from agentprm.evaluation import read_summary

    path = tmp_path / "summary.json"
    written = {**summarize([episode(0, PICK, won=True), episode(1, LOOK)]), "split": "valid_seen"}
    path.write_text(json.dumps(written))
    assert read_summary(path) == written
    cases = [
        (json.dumps({"won": 1}), "lacks eval/episodes, eval/won, eval/success, eval/mean_actions, "
                                 "eval/non_admissible_rate, per_task_type: not an evaluation summary"),
        (json.dumps({**written, "per_task_type": {"Pick": {"won": 1}}}), "lacks per_task_type.Pick.episodes:"),
        (json.dumps({**written, "per_task_type": [1]}), "lacks per_task_type \\(an object\\):"),
        (json.dumps([written]), "not a JSON object"),
        ('{"eval/won": ', "not a readable JSON summary"),
    ]
    for text, message in cases:
        path.write_text(text)
        with pytest.raises(CorruptRecordError, match=f"^{re.escape(str(tmp_path))}/summary\\.json: {message}"):
            read_summary(path)
    path.write_text(json.dumps({"eval/episodes": 2, "eval/won": 1}))  # a reader that needs only these two
    assert read_summary(path, ("eval/episodes", "eval/won")) == {"eval/episodes": 2, "eval/won": 1}
    with pytest.raises(CorruptRecordError, match=r"summary\.json: no such file"):
        read_summary(tmp_path / "gone" / "summary.json")
