"""The server's front door: uvicorn's httptools protocol with the limits it lacks.

uvicorn's httptools protocol buffers a request head without bound (one unfinished 100 MiB header grew the
server by as much), waits as long as a client likes for the rest of a body or for a keep-alive connection's next
request (any byte, a bare CRLF too, stops its idle timer), and answers a bad request in plain text. This subclass
counts the bytes of each request head as they arrive, bounds the URL, the time to send the headers and each pause
in a body, refuses connections past a maximum, and answers every refusal with the API's JSON error shape, after
the responses to the requests before it on the connection.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from semsearch.api.errors import error_response
from semsearch.api.observe import peer
from semsearch.settings import Settings

log = logging.getLogger("semsearch.server")
# After a refusal, how long the rest of what the client sends is read and dropped before the connection closes:
# closing with unread bytes resets the connection, and the client may lose the answer.
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class Limits:
    """What one connection may cost before the app sees its request."""

    max_header_bytes: int
    max_url_bytes: int
    header_timeout: float  # to send a request head, from connecting or from the head's first byte
    body_timeout: float  # the longest pause while sending a body
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        # One setting for both deadlines: each bounds how long the server waits on a client that is sending.
        timeout = settings.header_timeout_seconds
        return cls(settings.max_header_bytes, settings.max_url_bytes, timeout, timeout, settings.max_connections)


class _Refusal(Exception):
    """A request the server answers itself, before the app: status, error type and message."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def refusal_bytes(status: int, kind: str, message: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 response with the JSON error shape, closing the connection."""
    body = bytes(error_response(status, kind, message).body)
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in headers]
    lines += [b"content-type: application/json", b"content-length: " + str(len(body)).encode(), b"connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class LimitedProtocol(HttpToolsProtocol):
    """HTTP/1.1 with bounded request heads, deadlines on a client that is sending, and a connection cap; see
    `limited_protocol`.

    One deadline at a time: the header deadline from connecting, or from the first byte of a keep-alive
    connection's next request; the body deadline, restarted by each read, while a body is incomplete; between
    them uvicorn's keep-alive timer. None runs for a pipelined request while the response before it is sent."""

    limits: ClassVar[Limits]
    on_refused: ClassVar[Callable[[int], None] | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # reading a request head, or waiting for one (not a body)
        self._head_started = False  # some of that head (or a CRLF before it) has arrived
        self._head_bytes = 0  # bytes received since this head began (a memory bound, so it counts whole reads)
        self._head_size = 0  # the head's own bytes, from the parser (the exact bound once the head is complete)
        self._deadline: asyncio.TimerHandle | None = None
        self._refusal: _Refusal | None = None
        self._held: _Refusal | None = None  # a refusal waiting for the responses before it
        self._over_capacity = False
        self._lingering = False  # refused: reading only to drop the bytes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._over_capacity = len(self.connections) > self.limits.max_connections
        self._arm(self.limits.header_timeout, self._head_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering or self._held is not None:
            return
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
            self._head_started = True
            if self._deadline is None and not self._answering():  # a keep-alive connection's next request
                self._arm(self.limits.header_timeout, self._head_expired)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no WebSocket routes: the request is served as plain HTTP
        except httptools.HttpParserError:
            self._refuse(self._refusal or _Refusal(400, "invalid_request", "The request is not valid HTTP/1.1"))
            return
        if self._in_head:
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(self._too_large())
        elif not (self._lingering or self._held is not None or self.transport.is_closing()):
            self._arm(self.limits.body_timeout, self._body_expired)  # in a body: each read restarts its deadline

    def _too_large(self) -> _Refusal:
        limit = self.limits.max_header_bytes
        return _Refusal(431, "headers_too_large", f"The request line and headers are over {limit} bytes")

    def _answering(self) -> bool:
        """Whether the response to the request before the one being read is still to be sent in full."""
        return self.cycle is not None and not self.cycle.response_complete

    # Parser callbacks: raising here stops the parser, and data_received answers with the refusal kept.
    def _stop(self, refusal: _Refusal) -> None:
        self._refusal = refusal
        raise refusal

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size, self._head_started = 0, True
        if self._deadline is None and not self._answering():
            self._arm(self.limits.header_timeout, self._head_expired)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_size += len(url)
        if len(self.url) > self.limits.max_url_bytes:
            self._stop(_Refusal(414, "url_too_long", f"The URL is over {self.limits.max_url_bytes} bytes"))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.limits.max_header_bytes:
            self._stop(self._too_large())

    def on_headers_complete(self) -> None:
        if self._over_capacity:
            limit = self.limits.max_connections
            self._stop(_Refusal(503, "too_many_connections", f"The server has {limit} connections open; retry"))
        self._cancel_deadline()
        self._in_head, self._head_started = False, False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel_deadline()
        self._in_head, self._head_bytes, self._head_started = True, 0, False

    def on_response_complete(self) -> None:
        queued = len(self.pipeline)
        super().on_response_complete()  # starts the next pipelined request, else uvicorn's keep-alive timer
        if self.transport.is_closing() or queued:
            return
        if self._held is not None:
            refusal, self._held = self._held, None
            self._answer(refusal)
        elif self._in_head and self._head_started:  # part of the next request came during this response
            self._unset_keepalive_if_required()
            self._arm(self.limits.header_timeout, self._head_expired)

    # The deadlines.
    def _arm(self, seconds: float, expired: Callable[[], None]) -> None:
        self._cancel_deadline()
        self._deadline = self.loop.call_later(seconds, expired)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._answering():
            return
        if not self._head_started:  # a connection that never sent a request: nothing to answer
            self.transport.close()
            return
        timeout = self.limits.header_timeout
        self._refuse(_Refusal(408, "request_timeout", f"The request's headers did not arrive within {timeout:g} s"))

    def _body_expired(self) -> None:
        self._deadline = None
        cycle = self.cycle
        if self.transport.is_closing() or self._in_head or cycle is None:
            return
        if self.flow.read_paused or cycle.waiting_for_100_continue or any(c is cycle for c, _ in self.pipeline):
            self._arm(self.limits.body_timeout, self._body_expired)  # waiting on the server, not the client
            return
        timeout = self.limits.body_timeout
        self._refuse(_Refusal(408, "request_timeout", f"The request's body stopped for over {timeout:g} s"))

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer `refusal` and close the connection, once the responses before it are sent. A request whose
        body was being read is given up: its app is told the client left, and what it answers is dropped."""
        if self.transport.is_closing() or self._lingering or self._held is not None:
            return
        self._cancel_deadline()
        cycle = self.cycle
        if not self._in_head and cycle is not None:  # about the request being read
            if cycle.response_started:  # some of its answer is out: the connection can only be cut
                self.transport.close()
                return
            cycle.disconnected = True
            cycle.message_event.set()
            queued = next((entry for entry in self.pipeline if entry[0] is cycle), None)
            if queued is not None:  # it never ran: answered after the requests before it
                self.pipeline.remove(queued)
                self._held = refusal
                return
        elif self._answering():  # a pipelined request: answered after the one before it
            self._held = refusal
            return
        self._answer(refusal)

    def _answer(self, refusal: _Refusal) -> None:
        """Send `refusal` with the JSON error shape, then read and drop what else comes until the connection closes."""
        self._cancel_deadline()
        self._unset_keepalive_if_required()
        log.info("refused a request from %s: %d %s", peer(self.client), refusal.status, refusal)
        on_refused = type(self).on_refused  # read on the class: a plain function would bind to self
        if on_refused is not None:
            on_refused(refusal.status)
        headers = list(self.server_state.default_headers)
        self.transport.write(refusal_bytes(refusal.status, refusal.kind, str(refusal), headers))
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer, then the end: the client closes once it has read it
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def limited_protocol(limits: Limits, on_refused: Callable[[int], None] | None = None) -> type[LimitedProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to these limits (and told of refusals)."""

    class Protocol(LimitedProtocol):
        pass

    Protocol.limits = limits
    Protocol.on_refused = on_refused
    return Protocol
