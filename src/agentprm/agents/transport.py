"""The urllib plumbing under the API agent: a total deadline per request, and no redirects.

urllib's `timeout` bounds each socket operation, not the request: a server that sends one byte a
second keeps a request with a 2 s timeout alive for as long as it likes. A `Deadline` is a timer
that shuts the request's socket down when its time is up; the blocked read then returns at once
(end of stream), and the caller sees `deadline.expired` to tell a cut from a real disconnect.
urllib offers no hook on its sockets, so our handlers open connections of our own classes, which
hand their socket to the request's deadline as soon as they connect. The deadline covers sending
the request and reading the whole answer; connecting (TCP, a proxy tunnel, the TLS handshake) is
bounded by the per-operation timeout alone.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import threading
import urllib.request
from typing import Any


class Deadline:
    """Cuts the sockets it watches once `seconds` have passed since `__enter__`."""

    def __init__(self, seconds: float):
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _cut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _cut(sock)


def _cut(sock: socket.socket) -> None:
    """Shut the socket down, which wakes a read blocked on it in another thread (closing does not).
    The plain socket's method, so that a TLS socket is cut under its TLS layer too."""
    with contextlib.suppress(OSError):  # already closed: the request is over
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class DeadlineRequest(urllib.request.Request):
    """A request whose connection `deadline` watches (through the handlers of `build_opener`)."""

    def __init__(self, *args: Any, deadline: Deadline, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.deadline = deadline


def _deadline_of(req: urllib.request.Request) -> Deadline | None:
    return req.deadline if isinstance(req, DeadlineRequest) else None


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, deadline: Deadline | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deadline = deadline

    def connect(self) -> None:
        super().connect()
        if self._deadline is not None and self.sock is not None:
            self._deadline.watch(self.sock)


class _HTTPSConnection(_HTTPConnection, http.client.HTTPSConnection):
    """Watched once connected: `super().connect()` above is then HTTPSConnection's, TLS included."""


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPConnection, deadline=_deadline_of(req)), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        # No context passed: http.client's default one verifies the certificate and host name.
        return self.do_open(functools.partial(_HTTPSConnection, deadline=_deadline_of(req)), req)


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every redirect into an HTTPError instead of following it.

    urllib follows a 301/302/303 to whatever host the Location names, Authorization header
    included (a misconfigured or hostile server would hand the key to anyone), and turns our POST
    into a GET without the body, which no chat endpoint answers. Stripping the header would only
    leave a request that cannot work; refusing says plainly that the base URL needs changing. So
    no redirect is followed, to the same host or another.
    """

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> None:
        return None


def build_opener() -> urllib.request.OpenerDirector:
    """An opener that honours `DeadlineRequest.deadline` and follows no redirect; proxy settings
    are read from the environment once, here."""
    return urllib.request.build_opener(_HTTPHandler, _HTTPSHandler, _RefuseRedirects)
