"""A real `semsearch serve` (uvicorn) process on a free loopback port, for benchmarks and tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_index(index: Path, extra_env: Mapping[str, str] | None = None, timeout: float = 600) -> Iterator[str]:
    """Start the server on `index`, wait until its index is loaded, yield its base URL, then stop it."""
    with serve_process(index, extra_env, timeout) as (base, _):
        yield base


@contextmanager
def serve_process(
    index: Path, extra_env: Mapping[str, str] | None = None, timeout: float = 600
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`serve_index`, yielding the process too (to read its memory)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEMSEARCH_")}
    env.update(extra_env or {})
    env["SEMSEARCH_INDEX"] = str(index)
    command = [str(Path(sys.executable).parent / "semsearch"), "serve", "--host", LOOPBACK, "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://{LOOPBACK}:{port}"
    try:
        wait_until_loaded(process, base, timeout)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def wait_until_loaded(process: subprocess.Popen[str], base: str, timeout: float) -> None:
    """Poll `base`/health until the server says its index is loaded; raise if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(f"{base}/health", timeout=2).json().get("index_loaded"):
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not load its index within {timeout:.0f} s")
        time.sleep(0.3)
