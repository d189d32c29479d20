"""An agent backed by any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp server, ...).

It exists for the API baselines (e.g. the paper's ReAct GPT-4o row): the model sees exactly the
prompt our own policies see (`build_messages`) and its answer goes through the same `parse_answer`,
so the numbers are comparable. Only the standard library is used (urllib + json) so that running a
baseline needs no extra package.

The API key is kept in a `_Secret` and scrubbed from every message we build, so it can appear in no
repr, log line or exception, even when a server echoes it back in an error body (whole, cut short,
URL- or JSON-encoded, or as a `Bearer` header). It goes to the base URL's host only: redirects are
refused (see `transport`).
"""

from __future__ import annotations

import datetime
import email.utils
import http.client
import json
import logging
import math
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentprm.agents import transport
from agentprm.agents.base import AgentOutput
from agentprm.errors import AgentPRMError, ConfigError
from agentprm.prompts import TurnContext, build_messages, parse_answer, render
from agentprm.text import replace_surrogates

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
SPEC_PREFIX = "openai:"
DEFAULT_MAX_RESPONSE_BYTES = 4 * 2**20
_RETRY_AFTER_CAP_S = 60.0
_MAX_TIMEOUT_S = 86_400.0
_SNIPPET_CHARS = 200


class APIError(AgentPRMError):
    """The chat endpoint failed (after retries, or with an error retrying cannot fix)."""


_MIN_FRAGMENT = 8
"""Any run of this many characters of the key is hidden, not just the whole key: servers echo keys
cut short, and a snippet of a reply can end inside one. Fewer characters give too little away to
matter, and hiding them would hide ordinary words (and a key shorter than this is hidden whole)."""
_BEARER_RE = re.compile(r"\b(bearer)\s+[^\s\"',;]+", re.IGNORECASE)


class _Secret:
    """Holds the API key so that printing it, or any object or frame holding it, shows `***`, and
    hides it in text (`scrub`)."""

    __slots__ = ("_forms", "_fragments", "_value")

    def __init__(self, value: str):
        self._value = value
        json_escaped = json.dumps(value)[1:-1]
        # The key as sent, in a URL (a query string, a logged request line) and in JSON (some
        # encoders write "/" as "\/"): the forms an echo of it realistically takes.
        forms = {
            value,
            urllib.parse.quote(value, safe=""),
            urllib.parse.quote_plus(value),
            json_escaped,
            json_escaped.replace("/", "\\/"),
        }
        self._forms = sorted(forms, key=len, reverse=True)
        n = _MIN_FRAGMENT
        self._fragments = frozenset(form[i : i + n] for form in forms for i in range(len(form) - n + 1))

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        """`text` with every run of `_MIN_FRAGMENT`+ characters of the key, in any of its forms,
        replaced by `***`."""
        if len(self._value) < _MIN_FRAGMENT:
            for form in self._forms:
                text = text.replace(form, "***")
            return text
        n = _MIN_FRAGMENT
        spans: list[list[int]] = []  # [start, end) of text to hide, merged where windows overlap
        for i in range(len(text) - n + 1):
            if text[i : i + n] in self._fragments:
                if spans and i <= spans[-1][1]:
                    spans[-1][1] = i + n
                else:
                    spans.append([i, i + n])
        kept, last = [], 0
        for start, end in spans:
            kept += [text[last:start], "***"]
            last = end
        return "".join(kept) + text[last:]

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class _Retryable(Exception):
    """One failed attempt worth repeating (429, 5xx, timeout, dropped connection)."""

    def __init__(self, why: str, wait_s: float | None = None):
        super().__init__(why)
        self.why = why
        self.wait_s = wait_s
        """The server's Retry-After, when it sent one."""


def _display_url(url: str) -> str:
    """The base URL without any `user:password@` part, fit for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header, at most `_RETRY_AFTER_CAP_S`; None when absent or
    unusable (then our own backoff applies).

    The header is either delay-seconds or an HTTP-date (RFC 9110 10.2.3). Servers and proxies also
    send floats, "inf", "nan" or negatives: nan and negatives are ignored, a date in the past means
    now, anything huge waits the cap (so one bad header can neither crash `time.sleep` nor stall a run).
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": UTC by RFC 5322
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = max((when - datetime.datetime.now(datetime.timezone.utc)).total_seconds(), 0.0)
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, _RETRY_AFTER_CAP_S)


def _reply_text(content: object) -> str | None:
    """The text of a reply's `message.content`, or None when it cannot hold any.

    A string is the usual case; null (a refusal, a tool call) is an empty answer; a list of content
    parts (some servers answer that way) gives its text parts joined by newlines, as vLLM joins them
    in prompts, other parts (images, reasoning) skipped. The text is made safe to store and encode:
    JSON may carry lone surrogates, which would crash the trajectory writer or a tokenizer later.
    """
    if content is None:
        return ""
    if isinstance(content, list):
        content = "\n".join(text for text in map(_part_text, content) if text is not None)
    if not isinstance(content, str):
        return None
    return replace_surrogates(content)


def _part_text(part: object) -> str | None:
    """A content part's text: a bare string or `{"type": "text", "text": ...}`; None for other parts."""
    if isinstance(part, str):
        return part
    if isinstance(part, dict) and part.get("type", "text") == "text" and isinstance(part.get("text"), str):
        return part["text"]
    return None


class OpenAIChatAgent:
    """Chat-completions agent; one request per context, a batch sent concurrently.

    `timeout_s` bounds each request as a whole, from sending it to the last byte of the answer (a
    request cut off by it is retried). `max_retries` counts repeats after the first attempt (so at
    most `max_retries + 1` requests per turn); waits double from `backoff_s`, or follow the server's
    Retry-After. `max_response_bytes` (default 4 MiB) caps the answer's body: an answer of
    `max_tokens` tokens is a few KB, so a bigger one means a wrong endpoint or a broken server.
    `few_shot` appends the worked example in `react_fewshot.jinja` to the system prompt (the
    ReAct-style baseline); it is off by default so the API model sees the same prompt as our
    trained policies.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 96,
        history_window: int | None = None,
        timeout_s: float = 60,
        max_retries: int = 3,
        concurrency: int = 4,
        few_shot: bool = False,
        backoff_s: float = 1.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ):
        if not model:
            raise ConfigError("OpenAIChatAgent needs a model name, e.g. --policy openai:gpt-4o")
        # A timeout is also a socket timeout and a timer: nan, inf or centuries crash them.
        if concurrency < 1 or max_retries < 0 or not 0 < timeout_s <= _MAX_TIMEOUT_S or max_response_bytes < 1:
            raise ConfigError(
                f"OpenAIChatAgent: need concurrency >= 1, max_retries >= 0, 0 < timeout_s <= {_MAX_TIMEOUT_S:g} "
                f"and max_response_bytes >= 1 (got {concurrency}, {max_retries}, {timeout_s}, {max_response_bytes})"
            )
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        if urllib.parse.urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ConfigError(
                f"base URL {_display_url(self.base_url)!r} must start with http:// or https://, "
                "e.g. http://127.0.0.1:8000/v1"
            )
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        # Local servers (vLLM, llama.cpp) often need no key; api.openai.com always does.
        if not key and urllib.parse.urlsplit(self.base_url).hostname == "api.openai.com":
            raise ConfigError(
                "no API key for api.openai.com: set OPENAI_API_KEY (or pass api_key), "
                "or point OPENAI_BASE_URL at a local OpenAI-compatible server"
            )
        self._api_key = _Secret(key) if key else None
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.history_window = history_window
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.few_shot = few_shot
        self.backoff_s = backoff_s
        self.max_response_bytes = max_response_bytes
        self.policy_id = f"openai:{model}"
        # Our own opener: proxy settings are read once here, not from the process-wide urlopen state.
        self._opener = transport.build_opener()

    def __repr__(self) -> str:
        return (
            f"OpenAIChatAgent(model={self.model!r}, base_url={_display_url(self.base_url)!r}, "
            f"temperature={self.temperature}, max_tokens={self.max_tokens}, "
            f"history_window={self.history_window}, few_shot={self.few_shot})"
        )

    def act(self, contexts: list[TurnContext]) -> list[AgentOutput]:
        if not contexts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(contexts))) as pool:
            return list(pool.map(self._act_one, contexts))

    def messages(self, ctx: TurnContext) -> list[dict[str, str]]:
        """The chat messages sent for one turn (public so evaluations can log the exact prompt)."""
        messages = build_messages(ctx, self.history_window)
        if self.few_shot:
            messages[0]["content"] += "\n\n" + render("react_fewshot")
        return messages

    def _act_one(self, ctx: TurnContext) -> AgentOutput:
        text = self.complete(self.messages(ctx))
        parsed = parse_answer(text, ctx.admissible_actions)
        return AgentOutput(action=parsed.action, raw_output=text, reason=parsed.reason, matched=parsed.matched)

    def complete(self, messages: list[dict[str, str]]) -> str:
        """The assistant's text for one chat request, retrying transient failures."""
        body = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return self._post(body)
            except _Retryable as err:
                if attempt == attempts - 1:
                    raise APIError(
                        self._scrub(
                            f"chat request to {_display_url(self.base_url)} (model {self.model}) failed "
                            f"after {attempts} attempts: {err.why}; check the server or raise max_retries"
                        )
                    ) from None
                wait = err.wait_s if err.wait_s is not None else self.backoff_s * 2**attempt
                log.warning(
                    "chat request to %s: %s; retry %d/%d in %.1fs",
                    _display_url(self.base_url),
                    self._scrub(err.why),
                    attempt + 1,
                    self.max_retries,
                    wait,
                )
                time.sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def _post(self, body: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        with transport.Deadline(self.timeout_s) as deadline:
            request = transport.DeadlineRequest(
                f"{self.base_url}/chat/completions",
                data=json.dumps(body).encode(),
                headers=headers,
                method="POST",
                deadline=deadline,
            )
            try:
                payload = self._exchange(request)
            except (_Retryable, APIError):
                if deadline.expired:  # the cut made the failure: report the cause
                    raise self._timed_out() from None
                raise
            if deadline.expired:  # a body without Content-Length reads as complete when cut
                raise self._timed_out()
        return self._content(payload)

    def _timed_out(self) -> _Retryable:
        return _Retryable(f"no complete answer within {self.timeout_s}s")

    def _exchange(self, request: urllib.request.Request) -> bytes:
        """Send the request and read the answer's body, sorting failures into retryable or not."""
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return self._read_body(response)
        except urllib.error.HTTPError as err:
            if 300 <= err.code < 400:
                raise self._redirected(err) from None
            why = f"HTTP {err.code}{self._error_detail(err)}"
            if err.code == 429 or err.code >= 500:
                raise _Retryable(why, _retry_after(err.headers.get("Retry-After"))) from None
            raise APIError(
                self._scrub(
                    f"chat request to {_display_url(self.base_url)} (model {self.model}) failed: {why}; "
                    "check the model name, base URL and API key"
                )
            ) from None
        except TimeoutError:
            raise _Retryable(f"no answer within {self.timeout_s}s") from None
        except urllib.error.URLError as err:
            raise _Retryable(f"connection failed ({err.reason})") from None
        except (OSError, http.client.HTTPException) as err:  # reset, TLS error, cut short
            raise _Retryable(f"connection dropped ({type(err).__name__})") from None

    def _read_body(self, response: http.client.HTTPResponse) -> bytes:
        """The body, refused when it is over `max_response_bytes`: before reading it when its length
        is declared, else as soon as one byte more than the limit has come."""
        limit = self.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise self._too_large(int(declared))
        payload = response.read(limit + 1)
        if len(payload) > limit:
            raise self._too_large(None)
        return payload

    def _too_large(self, declared: int | None) -> APIError:
        size = f"of {declared:,} bytes, " if declared is not None else ""
        return APIError(
            self._scrub(
                f"{_display_url(self.base_url)} sent an answer {size}over max_response_bytes="
                f"{self.max_response_bytes:,}; a chat answer is a few KB: check the base URL, or raise "
                "max_response_bytes"
            )
        )

    def _content(self, payload: bytes) -> str:
        """The reply's text, safe to pass on (see `_reply_text`)."""
        try:
            content = json.loads(payload.decode("utf-8", errors="replace"))["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            # Scrubbed before it is cut, so that the cut cannot leave part of a key unrecognised.
            snippet = self._scrub(" ".join(payload[:4096].decode(errors="replace").split()))[:_SNIPPET_CHARS]
            raise APIError(
                self._scrub(
                    f"{_display_url(self.base_url)} answered without choices[0].message.content "
                    f"(is it OpenAI-compatible?): {snippet!r}"
                )
            ) from None
        text = _reply_text(content)
        if text is None:
            raise APIError(
                self._scrub(
                    f"{_display_url(self.base_url)} answered with a {type(content).__name__} as "
                    "choices[0].message.content, not text or a list of text parts (is it OpenAI-compatible?)"
                )
            )
        return text

    def _redirected(self, err: urllib.error.HTTPError) -> APIError:
        location = urllib.parse.urljoin(err.url, err.headers.get("Location", ""))
        return APIError(
            self._scrub(
                f"chat request to {_display_url(self.base_url)} was redirected (HTTP {err.code}) to "
                f"{_display_url(location)!r}; redirects are not followed, so the API key goes to no other "
                "address: if that address is right, set it as the base URL"
            )
        )

    def _error_detail(self, err: urllib.error.HTTPError) -> str:
        """The server's own error message, on one short line (OpenAI puts it in error.message)."""
        try:
            raw = err.read(4096).decode(errors="replace")
        except Exception:
            return ""
        try:
            detail = json.loads(raw)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = raw
        detail = self._scrub(" ".join(str(detail).split()))[:_SNIPPET_CHARS]
        return f" ({detail})" if detail else ""

    def _scrub(self, text: str) -> str:
        """`text` with the key (see `_Secret.scrub`) and any bearer token replaced by `***`: some
        servers echo the key, or the whole Authorization header, back in their errors."""
        if self._api_key is not None:
            text = self._api_key.scrub(text)
        return _BEARER_RE.sub(r"\1 ***", text)


def agent_from_spec(spec: str, **kw: Any) -> OpenAIChatAgent:
    """The agent for a `--policy` spec of the form `openai:MODEL` (e.g. `openai:gpt-4o`);
    keyword arguments go to `OpenAIChatAgent`."""
    prefix, _, model = spec.partition(":")
    if prefix != SPEC_PREFIX.rstrip(":") or not model:
        raise ConfigError(f"unknown policy spec {spec!r}: expected 'openai:MODEL', e.g. 'openai:gpt-4o'")
    return OpenAIChatAgent(model=model, **kw)
