"""OpenAIChatAgent against a fake OpenAI-compatible server on loopback (no network, < 10 s).

The server checks the bearer key, records every request, and follows a per-test script of
failures (HTTP status codes, a slow answer, or a handler writing its own answer) before answering
normally.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentprm.agents import openai_chat
from agentprm.agents.base import Agent
from agentprm.agents.openai_chat import APIError, OpenAIChatAgent, agent_from_spec
from agentprm.errors import AgentPRMError, ConfigError
from agentprm.prompts import TurnContext, build_messages

KEY = "sk-test-0123456789abcdefSECRET"
CANNED = "REASON: The milk is usually cold.\nACTION: Go To Fridge 1."
SLOW_S = 0.6


@dataclass
class FakeAPI:
    url: str = ""
    key: str = KEY
    """The bearer key the server accepts."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: list[int | str | Callable[[BaseHTTPRequestHandler], None]] = field(default_factory=list)
    """Consumed one per request: an HTTP status to fail with, "slow" to answer after SLOW_S, or a
    function that writes the whole answer itself (raw bytes, odd headers, a drip)."""
    reply: Callable[[dict[str, Any]], Any] = lambda body: CANNED
    """The `message.content` to answer with (usually text)."""
    delay_s: float = 0.0
    inflight: int = 0
    max_inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            auth = self.headers.get("Authorization", "")
            with api.lock:
                api.requests.append({"path": self.path, "auth": auth, "body": body})
                step = api.script.pop(0) if api.script else None
                api.inflight += 1
                api.max_inflight = max(api.max_inflight, api.inflight)
            try:
                if auth != f"Bearer {api.key}":
                    # Real servers sometimes echo the key they got; the agent must scrub it.
                    return self._send(401, {"error": {"message": f"Incorrect API key provided: {auth}"}})
                if isinstance(step, int):
                    return self._send(step, {"error": {"message": f"overloaded (you sent {auth})"}})
                if callable(step):
                    return step(self)
                time.sleep(SLOW_S if step == "slow" else api.delay_s)
                text = api.reply(body)
                self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
            finally:
                with api.lock:
                    api.inflight -= 1

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hanging up on a slow answer is expected in the timeout test


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    server = _QuietServer(("127.0.0.1", 0), _handler(state := FakeAPI()))
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


def _ctx(actions: list[str] | None = None, observation: str = "You are in the kitchen.") -> TurnContext:
    return TurnContext(
        task="put a cool milk in cabinet.",
        observation=observation,
        admissible_actions=actions or ["go to fridge 1", "go to cabinet 1", "look"],
    )


def _agent(api: FakeAPI, **kw: Any) -> OpenAIChatAgent:
    kw = {"base_url": api.url, "api_key": KEY, "backoff_s": 0.01, "timeout_s": 5, **kw}
    return OpenAIChatAgent("gpt-4o", **kw)


def test_returns_admissible_spelling_and_sends_prompt(api: FakeAPI) -> None:
    agent = _agent(api, temperature=0.3, max_tokens=50)
    ctx = _ctx()
    [out] = agent.act([ctx])
    assert isinstance(agent, Agent) and agent.policy_id == "openai:gpt-4o"
    assert (out.action, out.matched, out.logprob) == ("go to fridge 1", True, None)
    assert out.reason == "The milk is usually cold."
    assert out.raw_output == CANNED

    [req] = api.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["auth"] == f"Bearer {KEY}"
    body = req["body"]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("gpt-4o", 0.3, 50)
    assert body["messages"] == build_messages(ctx)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    system = body["messages"][0]["content"]
    assert "move <object> to <place>" in system and "put <" not in system


def test_history_window_and_few_shot(api: FakeAPI) -> None:
    from agentprm.prompts import Turn

    ctx = _ctx()
    ctx.history = [Turn(f"obs {i}", f"look {i}") for i in range(5)]
    _agent(api, history_window=2, few_shot=True).act([ctx])
    system, user = (m["content"] for m in api.requests[0]["body"]["messages"])
    assert user == build_messages(ctx, 2)[1]["content"]
    assert "obs 3" in user and "obs 2" not in user
    assert "ACTION: move mug 1 to coffeemachine 1" in system
    assert not re.search(r"^ACTION: put\b", system, re.MULTILINE), "this data's command is `move X to Y`"


def test_batch_is_concurrent_and_keeps_order(api: FakeAPI) -> None:
    api.delay_s = 0.2
    # Answer with the context's only candidate, so a mixed-up order would show.
    api.reply = lambda body: "ACTION: " + body["messages"][1]["content"].rsplit("Candidate actions: ", 1)[1]
    contexts = [_ctx([f"go to drawer {i}"]) for i in range(4)]
    outs = _agent(api, concurrency=4).act(contexts)
    assert [o.action for o in outs] == [f"go to drawer {i}" for i in range(4)]
    assert all(o.matched for o in outs)
    assert api.max_inflight > 1
    assert _agent(api).act([]) == []


def test_unmatched_answer_goes_through_raw(api: FakeAPI) -> None:
    api.reply = lambda body: "ACTION: dance with fridge 1"
    [out] = _agent(api).act([_ctx()])
    assert (out.action, out.matched) == ("dance with fridge 1", False)


def test_retries_after_one_500(api: FakeAPI, caplog: pytest.LogCaptureFixture) -> None:
    api.script = [500]
    with caplog.at_level(logging.WARNING):
        [out] = _agent(api).act([_ctx()])
    assert out.action == "go to fridge 1"
    assert len(api.requests) == 2
    assert "HTTP 500" in caplog.text and KEY not in caplog.text


def test_retries_after_429_and_timeout(api: FakeAPI) -> None:
    api.script = [429, "slow"]
    [out] = _agent(api, timeout_s=0.2).act([_ctx()])
    assert out.action == "go to fridge 1"
    assert len(api.requests) == 3


def test_repeated_500_raise_one_line_api_error(api: FakeAPI, caplog: pytest.LogCaptureFixture) -> None:
    api.script = [500] * 10
    agent = _agent(api, max_retries=2)
    with caplog.at_level(logging.DEBUG), pytest.raises(APIError) as info:
        agent.act([_ctx()])
    msg = str(info.value)
    assert isinstance(info.value, AgentPRMError)
    assert len(api.requests) == 3
    assert "\n" not in msg
    assert "HTTP 500" in msg and api.url in msg and "3 attempts" in msg
    assert KEY not in msg and KEY not in repr(info.value) and KEY not in caplog.text
    err: BaseException | None = info.value
    while err is not None:  # nothing chained to the error may carry the key either
        assert KEY not in str(err) and KEY not in repr(err.args)
        err = err.__cause__ or err.__context__


def test_bad_key_fails_fast_without_echoing_it(api: FakeAPI) -> None:
    wrong = "sk-wrong-key-SHOULD-NOT-LEAK"
    with pytest.raises(APIError) as info:
        _agent(api, api_key=wrong).act([_ctx()])
    msg = str(info.value)
    assert len(api.requests) == 1, "a 401 is not retried"
    assert "HTTP 401" in msg and "Incorrect API key" in msg and "\n" not in msg
    assert wrong not in msg and wrong not in repr(info.value)


def test_key_never_in_repr(api: FakeAPI) -> None:
    agent = _agent(api)
    for text in (repr(agent), str(agent), repr(vars(agent)), str(vars(agent))):
        assert KEY not in text


def test_settings_from_environment(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", api.url + "/")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    agent = agent_from_spec("openai:gpt-4o-mini", backoff_s=0.01)
    assert agent.policy_id == "openai:gpt-4o-mini" and agent.base_url == api.url
    assert agent.act([_ctx()])[0].action == "go to fridge 1"
    assert api.requests[0]["body"]["model"] == "gpt-4o-mini"


def test_connection_refused_is_an_api_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    agent = OpenAIChatAgent("m", base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=1, backoff_s=0.01)
    with pytest.raises(APIError, match="2 attempts") as info:
        agent.act([_ctx()])
    assert KEY not in str(info.value)


@pytest.mark.parametrize("spec", ["gpt-4o", "openai:", "hf:gpt-4o"])
def test_bad_spec(spec: str) -> None:
    with pytest.raises(ConfigError, match="openai:MODEL"):
        agent_from_spec(spec, base_url="http://127.0.0.1:1/v1")


@pytest.mark.parametrize(
    "setting",
    [
        {"timeout_s": 0},
        {"timeout_s": float("nan")},
        {"timeout_s": float("inf")},
        {"timeout_s": 1e10},
        {"max_response_bytes": 0},
        {"concurrency": 0},
    ],
)
def test_bad_settings_are_config_errors(setting: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"0 < timeout_s <= 86400 and max_response_bytes >= 1"):
        OpenAIChatAgent("m", base_url="http://127.0.0.1:8000/v1", **setting)


def test_openai_without_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIChatAgent("gpt-4o")
    with pytest.raises(ConfigError, match="http"):
        OpenAIChatAgent("m", base_url="127.0.0.1:8000/v1")


def _raw(status: int, body: bytes, headers: dict[str, str] | None = None) -> Callable[[BaseHTTPRequestHandler], None]:
    """A script step that answers `body` as is, with `headers` (Content-Length added)."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    return respond


@pytest.mark.parametrize(
    ("content", "raw_output", "action", "matched"),
    [
        (
            [
                {"type": "text", "text": "REASON: cold"},
                {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
                {"type": "reasoning", "text": "ACTION: look"},  # not a text part: skipped
                {"type": "text", "text": "ACTION: go to fridge 1"},
            ],
            "REASON: cold\nACTION: go to fridge 1",
            "go to fridge 1",
            True,
        ),
        # Joined by newlines: glued together, "coldACTION:" would be no marker.
        (
            ["REASON: cold", {"text": "ACTION: go to cabinet 1"}],
            "REASON: cold\nACTION: go to cabinet 1",
            "go to cabinet 1",
            True,
        ),
        ([{"type": "text", "text": 7}], "", "look", False),
        ([], "", "look", False),
        (None, "", "look", False),
        ("ACTION: go to cabinet 1\ud800", "ACTION: go to cabinet 1\ufffd", "go to cabinet 1\ufffd", False),
        (["ACTION: ", "\udfff look"], "ACTION: \n\ufffd look", "\ufffd look", False),
    ],
)
def test_content_parts_null_and_surrogates(
    api: FakeAPI, content: Any, raw_output: str, action: str, matched: bool
) -> None:
    api.reply = lambda body: content
    [out] = _agent(api).act([_ctx()])
    assert (out.raw_output, out.action, out.matched) == (raw_output, action, matched)
    out.raw_output.encode("utf-8")  # safe to write anywhere


def test_reply_with_surrogate_is_recorded(api: FakeAPI, tmp_path: Path) -> None:
    from agentprm.trajectory import Episode, Step, TrajectoryWriter, read_episodes

    api.reply = lambda body: "REASON: \udc00cold\nACTION: look"
    [out] = _agent(api).act([_ctx()])
    step = Step(
        observation="o", admissible_actions=["look"], action=out.action, reason=out.reason, raw_output=out.raw_output
    )
    episode = Episode(episode_id="e", game_id="g", split="s", task_type="t", task="x", steps=[step])
    with TrajectoryWriter(tmp_path / "t.jsonl") as writer:
        writer.write(episode)
    [back] = read_episodes(tmp_path / "t.jsonl")
    assert back.steps[0].raw_output == "REASON: \ufffdcold\nACTION: look"
    assert (back.steps[0].reason, back.steps[0].action) == ("\ufffdcold", "look")


def test_invalid_utf8_in_reply_is_replaced(api: FakeAPI) -> None:
    body = b'{"choices": [{"message": {"content": "ACTION: look \xff\xfe"}}]}'
    api.script = [_raw(200, body, {"Content-Type": "application/json"})]
    [out] = _agent(api).act([_ctx()])
    assert out.raw_output == "ACTION: look \ufffd\ufffd"


@pytest.mark.parametrize(
    ("content", "kind"), [(42, "int"), (0, "int"), (1.5, "float"), (True, "bool"), ({"text": "look"}, "dict")]
)
def test_non_text_content_is_one_line_api_error(api: FakeAPI, content: Any, kind: str) -> None:
    api.reply = lambda body: content
    with pytest.raises(APIError, match=f"answered with a {kind} as choices") as info:
        _agent(api).act([_ctx()])
    assert "\n" not in str(info.value)
    assert len(api.requests) == 1, "retrying would get the same answer"


@pytest.mark.parametrize(
    ("header", "logged_wait"),
    [
        ("0.1", "0.1s"),
        ("nan", "0.3s"),  # unusable: our own backoff (0.3 s)
        ("-5", "0.3s"),
        ("soon", "0.3s"),
        ("inf", "0.2s"),  # huge: the cap (patched to 0.2 s)
        ("1e400", "0.2s"),
        ("99999999999", "0.2s"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "0.0s"),  # a date in the past: now
        ("Fri, 01 Jan 2100 00:00:00 GMT", "0.2s"),
    ],
)
def test_retry_after_is_parsed_and_capped(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, header: str, logged_wait: str
) -> None:
    monkeypatch.setattr(openai_chat, "_RETRY_AFTER_CAP_S", 0.2)
    api.script = [_raw(429, b'{"error": {"message": "slow down"}}', {"Retry-After": header})]
    with caplog.at_level(logging.WARNING):
        [out] = _agent(api, backoff_s=0.3).act([_ctx()])
    assert out.action == "go to fridge 1" and len(api.requests) == 2
    assert f"retry 1/3 in {logged_wait}" in caplog.text


def test_retry_after_http_date_counts_from_now() -> None:
    in_30s = email.utils.format_datetime(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=30))
    wait = openai_chat._retry_after(in_30s)
    assert wait is not None and 28 < wait <= 30


@pytest.fixture
def other_host() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A server on another loopback address that records (method, Authorization) and answers CANNED."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            seen.append((self.command, self.headers.get("Authorization", "")))
            data = json.dumps({"choices": [{"message": {"content": CANNED}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

    server = _QuietServer(("127.0.0.2", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.2:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=2)


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_to_another_host_is_refused(
    api: FakeAPI, other_host: tuple[str, list[tuple[str, str]]], code: int
) -> None:
    url, seen = other_host
    api.script = [_raw(code, b"", {"Location": f"http://user:pw@{url.removeprefix('http://')}/v1/chat/completions"})]
    with pytest.raises(APIError) as info:
        _agent(api).act([_ctx()])
    msg = str(info.value)
    assert f"redirected (HTTP {code}) to '{url}/v1/chat/completions'" in msg and "base URL" in msg
    assert "pw" not in msg and KEY not in msg and "\n" not in msg
    assert seen == [], "the key went to the other host"
    assert len(api.requests) == 1, "a redirect is not retried"


def test_redirect_on_the_same_host_is_refused_too(api: FakeAPI) -> None:
    api.script = [_raw(302, b"", {"Location": "/v2/chat/completions"})]
    with pytest.raises(APIError, match=f"to '{re.escape(api.url[:-3])}/v2/chat/completions'"):
        _agent(api).act([_ctx()])
    assert [r["path"] for r in api.requests] == ["/v1/chat/completions"]


def _answer_bytes(content: str, content_length: bool = True) -> tuple[bytes, bytes]:
    """(status line and headers, body) of a normal answer, as the fake server writes them."""
    body = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
    length = f"Content-Length: {len(body)}\r\n" if content_length else ""
    return f"HTTP/1.0 200 OK\r\n{length}\r\n".encode(), body


def _drip(head: bytes, body: bytes, from_byte: int, every_s: float = 0.05) -> Callable[[BaseHTTPRequestHandler], None]:
    """A script step that writes head + body, one byte every `every_s` from byte `from_byte` on."""

    def respond(handler: BaseHTTPRequestHandler) -> None:
        data = head + body
        handler.wfile.write(data[:from_byte])
        for i in range(from_byte, len(data)):
            handler.wfile.write(data[i : i + 1])
            time.sleep(every_s)
        handler.close_connection = True

    return respond


@pytest.mark.parametrize("phase", ["headers", "body", "body without length"])
def test_timeout_is_a_total_deadline(api: FakeAPI, caplog: pytest.LogCaptureFixture, phase: str) -> None:
    # Each byte comes well within the 0.5 s timeout, but the whole answer would take 4-6 s.
    head, body = _answer_bytes("ACTION: look", content_length=phase != "body without length")
    api.script = [_drip(head, body, from_byte=0 if phase == "headers" else len(head))]
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        [out] = _agent(api, timeout_s=0.5, max_retries=1).act([_ctx()])
    elapsed = time.monotonic() - start
    assert out.action == "go to fridge 1", "the retry's answer, not the dripped one"
    assert len(api.requests) == 2
    assert "no complete answer within 0.5s" in caplog.text
    assert elapsed < 2.0


def test_deadline_error_after_retries(api: FakeAPI) -> None:
    head, body = _answer_bytes("ACTION: look")
    api.script = [_drip(head, body, from_byte=len(head))]
    start = time.monotonic()
    with pytest.raises(APIError, match=r"after 1 attempts: no complete answer within 0\.3s"):
        _agent(api, timeout_s=0.3, max_retries=0).act([_ctx()])
    assert time.monotonic() - start < 1.5


def test_answer_size_is_capped(api: FakeAPI) -> None:
    payload = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": CANNED}}]})
    assert _agent(api, max_response_bytes=len(payload)).act([_ctx()])[0].action == "go to fridge 1"
    with pytest.raises(APIError) as info:
        _agent(api, max_response_bytes=len(payload) - 1).act([_ctx()])
    msg = str(info.value)
    assert f"sent an answer of {len(payload)} bytes, over max_response_bytes={len(payload) - 1}" in msg
    assert "\n" not in msg
    assert len(api.requests) == 2, "an answer too large is not retried"


def test_answer_size_is_capped_without_content_length(api: FakeAPI) -> None:
    head, body = _answer_bytes("x" * 30_000, content_length=False)
    api.script = [_drip(head, body, from_byte=len(head + body))]  # all at once, ended by closing
    with pytest.raises(APIError, match="sent an answer over max_response_bytes=10,000;"):
        _agent(api, max_response_bytes=10_000).act([_ctx()])
    assert len(api.requests) == 1
    assert OpenAIChatAgent("m", base_url=api.url).max_response_bytes == 4 * 2**20


SLASHED_KEY = "sk-live/AbCdEf0123+456789=xyz"


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        (f"key {SLASHED_KEY} end", "key *** end"),
        ("url ?k=sk-live%2FAbCdEf0123%2B456789%3Dxyz&x=1", "url ?k=***&x=1"),  # URL-encoded
        ("url ?k=sk-live/AbCdEf0123%2B456789%3Dxyz&x=1", "url ?k=***&x=1"),  # quote() keeps "/"
        ('{"key": "sk-live\\/AbCdEf0123+456789=xyz"}', '{"key": "***"}'),  # JSON with "\/"
        ("Incorrect API key provided: sk-live/AbCd. Check it", "Incorrect API key provided: ***. Check it"),
        ("the key ends in Ef0123+456789=xyz", "the key ends in ***"),
        ("masked: sk-live/****=xyz", "masked: *******=xyz"),  # 8 characters hidden, 4 left: harmless
        ("it ends in =xyz; it starts with sk-", "it ends in =xyz; it starts with sk-"),  # under 8: kept
        (f"{SLASHED_KEY[:12]}{SLASHED_KEY}", "***"),  # overlapping runs merge
        ("got Authorization: Bearer other-token-123, retry", "got Authorization: Bearer ***, retry"),
        ("header authorization: bearer\tabc", "header authorization: bearer ***"),
    ],
)
def test_scrub_hides_key_forms_fragments_and_bearer_tokens(text: str, scrubbed: str) -> None:
    agent = OpenAIChatAgent("m", base_url="http://127.0.0.1:1/v1", api_key=SLASHED_KEY)
    assert agent._scrub(text) == scrubbed


def test_scrub_without_key_still_hides_bearer_tokens() -> None:
    agent = OpenAIChatAgent("m", base_url="http://127.0.0.1:1/v1", api_key="")
    assert agent._scrub("sent Bearer sk-abc") == "sent Bearer ***"


def test_short_key_is_hidden_whole_only() -> None:
    agent = OpenAIChatAgent("m", base_url="http://127.0.0.1:1/v1", api_key="tok/en")
    assert agent._scrub("tok/en, tok%2Fen, tok") == "***, ***, tok"


def test_url_encoded_key_echo_is_hidden(api: FakeAPI) -> None:
    api.key = SLASHED_KEY
    encoded = urllib.parse.quote(SLASHED_KEY, safe="")  # as it would sit in a query string
    echo = json.dumps({"error": {"message": f"bad request for /v1?api_key={encoded}&stream=0"}}).encode()
    api.script = [_raw(400, echo)]
    with pytest.raises(APIError) as info:
        _agent(api, api_key=SLASHED_KEY).act([_ctx()])
    assert "bad request for /v1?api_key=***&stream=0" in str(info.value)


def test_key_cut_by_the_snippet_is_hidden(api: FakeAPI) -> None:
    # The snippet of a non-JSON answer is 200 characters; the key starts at 190. Cut first and
    # scrubbed after, "sk-test-01" would show.
    api.script = [_raw(200, b"<html>" + b"x" * 184 + KEY.encode() + b"</html>")]
    with pytest.raises(APIError) as info:
        _agent(api).act([_ctx()])
    msg = str(info.value)
    assert msg.endswith("'<html>" + "x" * 184 + "***</html>'")  # 200 characters once scrubbed
    assert KEY[:8] not in msg
