"""`semsearch serve`: the listening sockets first (a port in use fails at once, before the index and model load),
then uvicorn with the bounded protocol, the log format, and a graceful shutdown that exits 0.

On SIGTERM or Ctrl+C uvicorn stops accepting connections, lets requests in flight finish (for up to
`shutdown_seconds`, then cancels them), and runs the app's shutdown, which waits for any write in progress:
a write holds the index's writer lock, and its thread goes on even when its request is cancelled. A second
Ctrl+C skips the app's shutdown, so the server waits for the write itself once uvicorn has returned.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from types import TracebackType

import uvicorn

from semsearch.errors import ServerAddressError
from semsearch.settings import Settings

log = logging.getLogger("semsearch.server")
BACKLOG = 2048


class Listening:
    """The sockets listening on every address of a host (`localhost`: 127.0.0.1, and ::1 where it resolves to
    both; an empty host: every interface, IPv4 and IPv6), as uvicorn binds them when it binds its own."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets = sockets

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()

    def __enter__(self) -> Listening:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def bind(host: str, port: int) -> Listening:
    """Sockets listening on `host`:`port`, or ServerAddressError saying why there cannot be one."""
    try:
        found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        message = f"Cannot serve on {host!r} ({exc.strerror}); give this machine's address with --host"
        raise ServerAddressError(message) from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):  # each address once, in the resolver's order
            try:
                sock = socket.socket(family, kind, proto)
            except OSError:  # a family this machine lacks (IPv6 turned off): skipped, as asyncio does
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port left in TIME_WAIT, not one in use
            if family == socket.AF_INET6:  # IPv4 has its own socket
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError as exc:
        Listening(sockets).close()
        raise ServerAddressError(_why(host, port, exc)) from None
    if not sockets:
        raise ServerAddressError(f"Cannot serve on {host!r}: no address of it can be used; choose one with --host")
    return Listening(sockets)


def _why(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"Port {port} on {host} is in use by another program; stop it or choose another port with --port"
    if exc.errno == errno.EACCES:
        return f"Not allowed to listen on {host}:{port} (ports below 1024 need privileges); choose one with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; give one with --host (127.0.0.1: this machine only)"
    return f"Cannot listen on {host}:{port}: {exc.strerror}"


class _Server(uvicorn.Server):
    """uvicorn's server, except that a graceful shutdown on SIGTERM or Ctrl+C ends with exit status 0: uvicorn
    raises the signal again once it has shut down, which kills the process with it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def run(settings: Settings, listening: Listening) -> None:
    """Serve the app for `settings` on the `listening` sockets until SIGTERM or Ctrl+C, then shut down gracefully."""
    from semsearch.api.app import create_app
    from semsearch.api.logs import log_config
    from semsearch.api.protocol import Limits, limited_protocol

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        http=limited_protocol(Limits.from_settings(settings), app.state.metrics.observe_refused),
        ws="none",
        lifespan="on",
        log_config=log_config(settings.log_format),
        access_log=False,
        timeout_keep_alive=settings.keep_alive_seconds,
        timeout_graceful_shutdown=settings.shutdown_seconds,
    )
    where = ", ".join(_url(sock) for sock in listening.sockets)
    log.info("Serving %s at %s (API docs at /docs, metrics at /metrics)", settings.index, where)
    with listening:
        _Server(config).run(sockets=listening.sockets)
    gate = getattr(app.state, "write_lock", None)  # none if the app never started
    if gate is not None and gate.pending:  # a second Ctrl+C skipped the app's shutdown, which waits for it
        log.info("Waiting for the write in progress to finish")
        gate.wait_idle()


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
