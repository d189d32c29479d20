"""Trajectory JSONL: round trip, corrupt records, crash-safe appends, version checks, one record per id."""

from __future__ import annotations

import json

import pytest

from agentprm.errors import CorruptRecordError
from agentprm.trajectory import Episode, Step, TrajectoryWriter, load_episodes, read_episodes


def make_episode(i: int, won: bool = True) -> Episode:
    steps = [
        Step(observation="You are in a room.", admissible_actions=["look", "go to desk 1"], action="go to desk 1",
             reason="the lamp is there", raw_output="REASON: the lamp is there\nACTION: go to desk 1"),
        Step(observation="On the desk 1, you see a lamp.", admissible_actions=["use desklamp 1"],
             action="use desklamp 1", reward=1.0 if won else 0.0, done=True, logprob=-1.5),
    ]
    return Episode(episode_id=f"g{i}#0", game_id=f"valid_seen/t/g{i}", split="valid_seen",
                   task_type="look_at_obj_in_light", task="look at a book under the lamp.", steps=steps,
                   won=won, policy_id="expert", seed=i)


def test_round_trip(tmp_path):
    path = tmp_path / "t.jsonl"
    eps = [make_episode(0), make_episode(1, won=False)]
    with TrajectoryWriter(path) as w:
        for ep in eps:
            w.write(ep)
    back = list(read_episodes(path))
    assert back == eps
    line = json.loads(path.read_text().splitlines()[0])
    assert line["format"] == "agentprm.trajectory" and line["version"] == 3 and line["num_steps"] == 2
    assert line["attempts"] == 1


def test_version_1_and_2_records_still_read(tmp_path):
    v2 = json.loads(make_episode(0).to_json())
    v2["version"] = 2
    del v2["attempts"]
    v1 = {**json.loads(json.dumps(v2)), "version": 1, "episode_id": "g1#0"}
    del v1["prefix_observations"]
    for step in v1["steps"]:
        del step["expert_action"]
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(v2) + "\n" + json.dumps(v1) + "\n")
    new, old = read_episodes(path)
    assert new.attempts == 1 and new.prefix_observations == make_episode(0).prefix_observations
    assert old.attempts == 1 and old.prefix_observations == [] and old.steps[0].expert_action is None
    assert old.num_steps == 2


def test_a_later_record_of_an_id_replaces_the_earlier_one_in_its_place(tmp_path):
    """What a rerun leaves: a failed record, then its retry appended under the same id."""
    path = tmp_path / "t.jsonl"
    failed = make_episode(0, won=False).model_copy(update={"failed": "worker 1 crashed (exit code -9)",
                                                           "attempts": 3})
    retried = make_episode(0).model_copy(update={"attempts": 4})
    with TrajectoryWriter(path) as w:
        for ep in (failed, make_episode(1), retried):
            w.write(ep)
    assert len(path.read_text().splitlines()) == 3  # append-only: the failed record is still on disk
    assert list(read_episodes(path)) == [retried, make_episode(1)]
    other = tmp_path / "other" / "t.jsonl"  # the same id in another file is another episode
    with TrajectoryWriter(other) as w:
        w.write(failed)
    assert [ep.failed for ep in load_episodes([path, other])] == [None, None, failed.failed]


def test_corrupt_line_is_named_or_skipped(tmp_path):
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path) as w:
        w.write(make_episode(0))
    with open(path, "a") as f:
        f.write('{"format": "agentprm.trajectory", "version": 1, "episode_id": 3}\n')
        f.write("not json at all\n")
    with TrajectoryWriter(path) as w:
        w.write(make_episode(1))
    with pytest.raises(CorruptRecordError, match=r"t\.jsonl:2"):
        list(read_episodes(path))
    with pytest.warns(UserWarning, match=r"t\.jsonl:3"):
        ids = [ep.episode_id for ep in read_episodes(path, skip_corrupt=True)]
    assert ids == ["g0#0", "g1#0"]


def test_half_written_tail_is_cut_on_reopen(tmp_path):
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path) as w:
        w.write(make_episode(0))
    with open(path, "a") as f:
        f.write('{"format": "agentprm.traj')  # a crash mid-append
    with pytest.warns(UserWarning, match="half-written"), TrajectoryWriter(path) as w:
        w.write(make_episode(1))
    assert [ep.episode_id for ep in load_episodes([tmp_path])] == ["g0#0", "g1#0"]


def test_newer_version_and_missing_file_are_refused(tmp_path):
    path = tmp_path / "t.jsonl"
    data = json.loads(make_episode(0).to_json())
    data["version"] = 99
    path.write_text(json.dumps(data) + "\n")
    with pytest.raises(CorruptRecordError, match="newer agentprm"):
        list(read_episodes(path))
    with pytest.raises(CorruptRecordError, match="no trajectory file"):
        list(read_episodes(tmp_path / "missing.jsonl"))


def test_lone_surrogates_are_written_as_replacement_characters(tmp_path):
    # json.loads('"\\ud800"') hands over a lone surrogate; UTF-8 cannot encode it.
    ep = make_episode(0)
    ep.steps[0].raw_output = "ACTION: look\ud800"
    ep.steps[1].observation = "\udfffa split pair: \ud83d\ude00"
    ep.meta = {"note": ["odd \udc80"]}
    path = tmp_path / "t.jsonl"
    with TrajectoryWriter(path) as w:
        w.write(ep)
        w.write(make_episode(1))
    path.read_bytes().decode("utf-8")  # strict: valid UTF-8
    back, nxt = read_episodes(path)
    assert back.steps[0].raw_output == "ACTION: look\ufffd"
    assert back.steps[1].observation == "\ufffda split pair: \U0001f600"
    assert back.meta == {"note": ["odd \ufffd"]}
    assert nxt == make_episode(1)
