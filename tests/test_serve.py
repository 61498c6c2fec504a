"""`semsearch serve` as a process on loopback: the port checked first, the limits of its front door (request
head size, URL length, header deadline, idle connections, connection cap), JSON request logs and /metrics over
a socket, and a SIGTERM that lets a write in progress finish and exits 0."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from semsearch.api.server import bind
from semsearch.benchmarks.server import LOOPBACK, free_port
from semsearch.errors import ServerAddressError
from semsearch.index.storage.store import open_index
from semsearch.settings import Settings

BIN = Path(sys.executable).parent
MIB = 1024 * 1024
TOKEN = "serve-test-token"


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path  # its stderr

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.port


@contextmanager
def serving(index: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """`semsearch serve ARGS` on `index` and a free loopback port, its stderr in `log`, once its index is loaded.
    A port that another program takes between free_port() and the server binding it is chosen again, once."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}
    environ.update(env or {}, SEMSEARCH_INDEX=str(index))
    for attempt in (1, 2):
        port = free_port()
        command = [str(BIN / "semsearch"), "serve", "--host", LOOPBACK, "--port", str(port), *args]
        with log.open("wb") as stderr:
            process = subprocess.Popen(command, env=environ, stdout=subprocess.DEVNULL, stderr=stderr)
        server = Server(process, port, log)
        try:
            if loaded(server):
                yield server
                return
        finally:
            stop(process)
        assert attempt == 1 and "is in use by another program" in log.read_text(), log.read_text()


def loaded(server: Server) -> bool:
    """True once the server has loaded its index, False if it exited first."""
    deadline = time.monotonic() + 300
    while server.process.poll() is None:
        with suppress(httpx.HTTPError):
            if httpx.get(f"{server.base}/health", timeout=5).json().get("index_loaded"):
                return True
        assert time.monotonic() < deadline, "the server did not load its index"
        time.sleep(0.2)
    return False


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout fails the test)."""
    chunks = []
    with suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def exchange(server: Server, data: bytes) -> bytes:
    """Send `data` on a new connection; what comes back until the server closes it."""
    with socket.create_connection(server.address, timeout=60) as sock:
        sock.sendall(data)
        return read_to_close(sock)


def content_length(head: bytes) -> int:
    return int(dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])[b"content-length"])


def read_response(sock: socket.socket) -> bytes:
    """One whole response (with a Content-Length) from a connection that stays open."""
    data = b""
    while True:
        head, found, body = data.partition(b"\r\n\r\n")
        if found and len(body) >= content_length(head):
            assert len(body) == content_length(head), f"more than one response: {data!r}"
            return data
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {data!r}"
        data += chunk


def split_response(data: bytes) -> tuple[bytes, bytes]:
    """The first response of `data` (with a Content-Length), and what follows it."""
    head, _, rest = data.partition(b"\r\n\r\n")
    length = content_length(head)
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def error_of(response: bytes) -> tuple[int, str]:
    """The status and error type of a raw response, which must carry the JSON error shape."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "application/json", response[:300]
    error = json.loads(body)["error"]
    assert set(error) == {"type", "message"} and error["message"]
    return int(lines[0].split()[1]), str(error["type"])


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def metrics(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics as {(sample name, sorted labels): value}."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def log_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def wait_for_log(log: Path, message: str) -> None:
    deadline = time.monotonic() + 120  # stderr is line-buffered; give a busy machine a moment
    while not any(entry["message"] == message for entry in log_lines(log)):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def bulk_articles(prefix: str, count: int) -> list[dict[str, str]]:
    """`count` new articles of three passages each: a write that takes a while (embedding them)."""
    paragraph = "Paragraph {p} of bulk article {n} is about grain exports, ferry routes across the Caspian Sea and "
    paragraph += "the weather over the steppe, long enough to stand as a passage of its own."
    return [
        {"id": f"{prefix}-{n}", "title": f"Bulk {n}", "body": "\n\n".join(paragraph.format(p=p, n=n) for p in range(3))}
        for n in range(count)
    ]


def start_write(base: str, articles: list[dict[str, str]]) -> Future[httpx.Response]:
    """POST `articles` from a thread; returns once the server's write is under way."""
    posted: Future[httpx.Response] = Future()

    def post() -> None:
        try:
            headers = {"authorization": f"Bearer {TOKEN}"}
            posted.set_result(httpx.post(f"{base}/articles", json={"articles": articles}, headers=headers, timeout=600))
        except BaseException as exc:
            posted.set_exception(exc)

    threading.Thread(target=post, daemon=True).start()
    deadline = time.monotonic() + 300
    while metrics(base).get(("semsearch_writes_in_progress", ()), 0) < 1:
        assert not posted.done() and time.monotonic() < deadline, "the write never started"
        time.sleep(0.05)
    return posted


def article_count(index: Path) -> int:
    stored = open_index(index)
    try:
        return int(stored.manifest.counts["articles"])
    finally:
        stored.close()


@pytest.fixture(scope="module")
def door(gv_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with short deadlines and few connections, logging JSON."""
    log = tmp_path_factory.mktemp("door") / "stderr.log"
    env = {
        "SEMSEARCH_HEADER_TIMEOUT_SECONDS": "2",
        "SEMSEARCH_KEEP_ALIVE_SECONDS": "1",
        "SEMSEARCH_MAX_CONNECTIONS": "6",
    }
    with serving(gv_settings.index, log, "--log-format", "json", env=env) as server:
        yield server


def test_a_port_in_use_fails_at_once_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A bad setting as well: the port is checked before the settings are read, let alone the index and model.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}
        env.update(SEMSEARCH_INDEX=str(tmp_path / "none"), SEMSEARCH_BACKEND="not-a-backend")
        command = [str(BIN / "semsearch"), "serve", "--host", LOOPBACK, "--port", str(port)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"Port {port} on {LOOPBACK} is in use" in result.stderr and "--port" in result.stderr


def test_every_address_of_the_host_is_listened_on() -> None:
    """Before: only the first address the host resolved to was bound, where uvicorn binds them all (`localhost`:
    127.0.0.1 and ::1 where it names both; an empty host: every interface, IPv4 and IPv6)."""
    found = socket.getaddrinfo(None, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    families = {info[0] for info in found}
    for attempt in (1, 2):  # a port another program takes between free_port() and bind() is chosen again, once
        port = free_port()
        try:
            listening = bind("", port)
            break
        except ServerAddressError:
            if attempt == 2:
                raise
    with listening:
        assert {sock.family for sock in listening.sockets} == families
        for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            if family in families:
                socket.create_connection((address, port), timeout=30).close()


def test_an_endless_header_is_cut_off_without_growing_the_server(door: Server) -> None:
    for _ in range(3):
        assert httpx.get(f"{door.base}/health", timeout=30).status_code == 200
    before = rss_bytes(door.process.pid)
    sent = 0
    with socket.create_connection(door.address, timeout=60) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: ")  # no token, and a header that never ends
        chunk = b"a" * MIB
        with suppress(OSError):  # the server may reset the connection while this is still sending
            for _ in range(100):
                sock.sendall(chunk)
                sent += 1
        with suppress(OSError):
            answer = read_to_close(sock)
    growth = rss_bytes(door.process.pid) - before
    print(f"RSS before {before / MIB:.1f} MiB, growth {growth / MIB:.1f} MiB after sending {sent} MiB of header")
    assert growth < 32 * MIB
    if sent == 100:  # all of it went out (read and dropped by the server): then the answer is there to read
        assert error_of(answer) == (431, "headers_too_large")
    assert httpx.get(f"{door.base}/health", timeout=30).status_code == 200


def test_limits_are_answered_with_the_json_error_shape(door: Server) -> None:
    long_url = b"GET /search?q=" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: test\r\n\r\n"
    assert error_of(exchange(door, long_url)) == (414, "url_too_long")
    big_head = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 80_000 + b"\r\n\r\n"
    assert error_of(exchange(door, big_head)) == (431, "headers_too_large")
    many = b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (n, b"v" * 100) for n in range(1000)) + b"\r\n"
    assert error_of(exchange(door, many)) == (431, "headers_too_large")
    assert error_of(exchange(door, b"NOT HTTP AT ALL\r\n\r\n")) == (400, "invalid_request")
    fine = exchange(door, b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
    assert fine.startswith(b"HTTP/1.1 200 ")


def test_slow_half_sent_and_idle_connections_are_closed(door: Server) -> None:
    half = exchange(door, b"GET /health HTTP/1.1\r\nHost: test\r\n")  # the blank line never comes
    assert error_of(half) == (408, "request_timeout")
    with socket.create_connection(door.address, timeout=60) as idle:  # connects, never sends
        assert read_to_close(idle) == b""
    with socket.create_connection(door.address, timeout=60) as kept:  # one request, then idle keep-alive
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = read_to_close(kept)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1") == 1


def test_half_sent_bodies_get_408_and_free_their_connections(door: Server) -> None:
    """Before: nothing bounded the wait for a body, so as many half-sent requests as the connection cap allows
    (no token needed) took the server offline until they chose to leave."""
    half = b"POST /search HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    # SEMSEARCH_MAX_CONNECTIONS is 6: one spare for a connection of an earlier test the server has yet to drop.
    held = [socket.create_connection(door.address, timeout=60) for _ in range(5)]
    try:
        for sock in held:
            sock.sendall(half)
        for sock in held:
            assert error_of(read_to_close(sock)) == (408, "request_timeout")
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 120  # their connections close as the server sees the clients go
    while (answer := exchange(door, b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")).startswith(b"HTTP/1.1 503 "):
        assert time.monotonic() < deadline, answer
    assert answer.startswith(b"HTTP/1.1 200 ")
    # Answered before its body came (a route that reads none): the rest of the body is still awaited, within the
    # same deadline, and then the connection is closed without a second answer.
    with socket.create_connection(door.address, timeout=60) as early:
        early.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc")
        assert read_response(early).startswith(b"HTTP/1.1 200 ")
        early.sendall(b"def")  # more of the body (which stops the keep-alive timer), never all of it
        assert read_to_close(early) == b""


def test_a_keep_alive_connection_sending_only_blank_lines_is_closed(door: Server) -> None:
    """Before: each byte stopped the keep-alive timer, and blank lines never start a request, so a CRLF a second
    held a connection open for good."""
    with socket.create_connection(door.address, timeout=60) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        sock.settimeout(0.2)  # well inside SEMSEARCH_KEEP_ALIVE_SECONDS=1: the keep-alive timer alone never fires
        rest, closed, deadline = b"", False, time.monotonic() + 120
        while not closed and time.monotonic() < deadline:
            try:
                sock.sendall(b"\r\n")
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # reset: the server closed the connection
                closed = True
            else:
                rest += chunk
                closed = not chunk
    assert closed
    assert error_of(rest) == (408, "request_timeout")


def test_connections_past_the_maximum_get_503(door: Server) -> None:
    deadline = time.monotonic() + 120  # six held connections must outlive the one past them: retry if slow
    while True:
        held = [socket.create_connection(door.address, timeout=60) for _ in range(6)]
        try:
            answer = exchange(door, b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        finally:
            for sock in held:
                sock.close()
        if not answer.startswith(b"HTTP/1.1 200 ") or time.monotonic() > deadline:
            break
    assert error_of(answer) == (503, "too_many_connections")


def test_json_request_log_ids_and_metrics_over_a_socket(door: Server) -> None:
    base: str = door.base
    question = "zanzibar clove harvest figures"
    searched = httpx.get(f"{base}/search", params={"q": question}, headers={"x-request-id": "client-42"}, timeout=60)
    assert searched.status_code == 200 and searched.headers["x-request-id"] == "client-42"
    unsafe = httpx.get(f"{base}/articles/nope", headers={"x-request-id": "<b>" + "x" * 100}, timeout=60)
    made = unsafe.headers["x-request-id"]
    assert unsafe.status_code == 404 and len(made) == 32 and made.isalnum()
    stats = httpx.get(f"{base}/stats", timeout=60).json()
    assert httpx.head(f"{base}/health", headers={"x-request-id": "client-head"}, timeout=60).status_code == 200

    found = metrics(base)
    assert found["semsearch_http_requests_total", (("method", "GET"), ("route", "/search"), ("status", "200"))] >= 1
    article_route = (("method", "GET"), ("route", "/articles/{article_id:path}"), ("status", "404"))
    assert found["semsearch_http_requests_total", article_route] >= 1
    assert found["semsearch_http_requests_total", (("method", "HEAD"), ("route", "/health"), ("status", "200"))] >= 1
    for stage in ("encode", "retrieve", "rank"):
        assert found["semsearch_search_stage_duration_seconds_count", (("stage", stage),)] >= 1
    assert found["semsearch_search_batch_size_count", ()] >= 1
    assert found["semsearch_index_generation", (("name", stats["generation"]),)] == 1
    assert found["semsearch_index_passages", ()] == stats["passages"]
    assert found["semsearch_index_segments", ()] == 1 and found["semsearch_index_reload_errors_total", ()] == 0

    log = door.log
    deadline = time.monotonic() + 60  # stderr is line-buffered; give a busy machine a moment
    while not any(entry.get("request_id") == "client-head" for entry in log_lines(log)):  # the last one logged
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    entries = log_lines(log)  # every line is one JSON object
    mine = next(e for e in entries if e.get("request_id") == "client-42" and e["logger"] == "semsearch.access")
    assert {k: mine[k] for k in ("method", "route", "status")} == {"method": "GET", "route": "/search", "status": 200}
    headed = next(e for e in entries if e.get("request_id") == "client-head" and e["logger"] == "semsearch.access")
    assert (headed["method"], headed["route"], headed["status"]) == ("HEAD", "/health", 200)  # the GET route's
    assert mine["duration_ms"] > 0
    assert "zanzibar" not in log.read_text()  # no question in the log unless --log-queries


def test_a_pipelined_request_is_answered_after_the_one_before_it(gv_settings: Settings, tmp_path: Path) -> None:
    """Before: the header deadline of a request sent behind a write closed the connection while the write ran
    (its client got nothing), and a pipelined 414 was sent at once, ahead of the write's answer."""
    index = tmp_path / "index"
    shutil.copytree(gv_settings.index, index)
    env = {"SEMSEARCH_API_TOKEN": TOKEN, "SEMSEARCH_HEADER_TIMEOUT_SECONDS": "1"}  # well under a write of 400
    partial = b"GET /health HTTP/1.1\r\nHost: test\r\n"  # its blank line never comes
    long_url = b"GET /search?q=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: test\r\n\r\n"
    with serving(index, tmp_path / "stderr.log", env=env) as server:
        for prefix, behind, refused in (
            ("partial", partial, (408, "request_timeout")),
            ("long", long_url, (414, "url_too_long")),
        ):
            body = json.dumps({"articles": bulk_articles(prefix, 400)}).encode()
            write = b"POST /articles HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\n" % TOKEN.encode()
            write += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            answer = exchange(server, write + behind)
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
            first, rest = split_response(answer)
            assert json.loads(first.partition(b"\r\n\r\n")[2])["added"] == 400
            assert error_of(rest) == refused
    assert article_count(index) == 800 + 4


def test_sigterm_lets_the_write_in_progress_finish_and_exits_0(gv_settings: Settings, tmp_path: Path) -> None:
    index = tmp_path / "index"
    shutil.copytree(gv_settings.index, index)
    articles = bulk_articles("bulk", 400)
    log = tmp_path / "stderr.log"
    env = {"SEMSEARCH_API_TOKEN": TOKEN, "SEMSEARCH_SHUTDOWN_SECONDS": "600"}  # not cut short on a slow machine
    with serving(index, log, "--log-format", "json", env=env) as server:
        posted = start_write(server.base, articles)
        server.process.send_signal(signal.SIGTERM)
        response = posted.result(timeout=600)
        assert server.process.wait(timeout=300) == 0
    assert response.status_code == 200 and response.json()["added"] == len(articles)
    entries = log_lines(log)
    shutting = next(n for n, e in enumerate(entries) if e["message"] == "Shutting down")
    written = next(n for n, e in enumerate(entries) if e.get("route") == "/articles" and e.get("status") == 200)
    assert shutting < written  # the signal came while the write ran
    assert article_count(index) == len(articles) + 4
    stored = open_index(index)
    try:
        assert stored.article("bulk-399") is not None
    finally:
        stored.close()


def test_a_second_ctrl_c_still_lets_the_write_finish(gv_settings: Settings, tmp_path: Path) -> None:
    """Before: a second Ctrl+C (uvicorn's force exit) skipped the app's shutdown, and the wait for the write in it;
    only the interpreter joining the write's worker thread at exit kept the index whole."""
    index = tmp_path / "index"
    shutil.copytree(gv_settings.index, index)
    articles = bulk_articles("forced", 1000)  # the batch limit: a write long enough to outlast both signals
    log = tmp_path / "stderr.log"
    env = {"SEMSEARCH_API_TOKEN": TOKEN, "SEMSEARCH_SHUTDOWN_SECONDS": "600"}
    with serving(index, log, "--log-format", "json", env=env) as server:
        posted = start_write(server.base, articles)
        server.process.send_signal(signal.SIGINT)
        wait_for_log(log, "Shutting down")
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(timeout=600) == 0
    with suppress(httpx.HTTPError):  # the request itself is cancelled: what its client gets does not matter
        posted.result(timeout=60)
    messages = [entry["message"] for entry in log_lines(log)]
    assert messages.index("Shutting down") < messages.index("Waiting for the write in progress to finish")
    assert article_count(index) == len(articles) + 4
