"""Each request seen once, outside every other middleware of the app: its id (kept from the client's
`x-request-id` when safe, sent back in the response's), its route template, status and duration, logged as one
record and counted in the metrics. The question is logged only when the server is told to (`--log-queries`).
An unexpected error is logged and answered here too, so that its record and its 500 carry the request id."""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semsearch.api.errors import internal_error
from semsearch.api.logs import ACCESS_LOGGER, REQUEST_ID, request_id
from semsearch.api.metrics import UNMATCHED, Metrics

access = logging.getLogger(ACCESS_LOGGER)
log = logging.getLogger("semsearch.api")
_MAX_LOGGED_BODY = 64 * 1024  # a POST /search body kept for --log-queries; larger ones are not parsed
_MAX_LOGGED_QUERY = 1000


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, log_queries: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.log_queries = log_queries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(dict(scope.get("headers", [])).get(b"x-request-id"))
        token = REQUEST_ID.set(rid)
        status, responding = 500, False  # 500 unless a response starts
        body = bytearray()
        keep_body = self.log_queries and scope["method"] == "POST" and scope["path"] == "/search"

        async def receiving() -> Message:
            message = await receive()
            if keep_body and message["type"] == "http.request" and len(body) <= _MAX_LOGGED_BODY:
                body.extend(message.get("body", b""))
            return message

        async def sending(message: Message) -> None:
            nonlocal status, responding
            if message["type"] == "http.response.start":
                status, responding = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receiving, sending)
        except Exception:
            # Starlette would answer it outside every middleware, where the request id is gone. A response
            # already begun can only be cut short: uvicorn closes the connection.
            log.exception("unexpected error")
            if not responding:
                await internal_error()(scope, receiving, sending)
        finally:
            seconds = time.perf_counter() - started
            route = _route(scope)
            self.metrics.observe_request(scope["method"], route, status, seconds)
            fields: dict[str, Any] = {
                "request_id": rid,
                "method": scope["method"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
            }
            if self.log_queries and (question := _question(scope, bytes(body))) is not None:
                fields["query"] = question
            _log_access(scope, fields)
            REQUEST_ID.reset(token)


def _route(scope: Scope) -> str | None:
    """The template of the route that matched (`/articles/{article_id:path}`), None when none did."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else None


def _question(scope: Scope, body: bytes) -> str | None:
    """The search's question: `q` of the query string, or `query` of a JSON body."""
    if scope["path"] != "/search":
        return None
    found: object = None
    if scope["method"] == "GET":
        values = parse_qs(scope.get("query_string", b"").decode("utf-8", "replace")).get("q")
        found = values[0] if values else None
    elif body and len(body) <= _MAX_LOGGED_BODY:
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            parsed = None
        found = parsed.get("query") if isinstance(parsed, dict) else None
    return found[:_MAX_LOGGED_QUERY] if isinstance(found, str) else None


def peer(client: tuple[str, int] | None) -> str:
    """A client's address as the logs write it: `host:port`, or `-` when unknown."""
    return f"{client[0]}:{client[1]}" if client else "-"


def _log_access(scope: Scope, fields: dict[str, Any]) -> None:
    client = peer(scope.get("client"))
    line = f"{fields['method']} {fields['route'] or UNMATCHED}"
    message = f'{client} - "{line}" {fields["status"]} {fields["duration_ms"]:.1f} ms id={fields["request_id"]}'
    if "query" in fields:
        message += f" query={json.dumps(fields['query'], ensure_ascii=False)}"
    access.info(message, extra={"fields": {**fields, "client": client}})
