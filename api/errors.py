"""One JSON error shape for every failure: `{"error": {"type", "message"}}`, and the status of each error class."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semsearch import errors as domain

log = logging.getLogger("semsearch.api")


class ApiError(Exception):
    """An HTTP-level failure raised by the app itself."""

    status = 500
    type = "internal_error"


class NotFound(ApiError):
    status = 404
    type = "not_found"


class Unauthorized(ApiError):
    status = 401
    type = "unauthorized"


class Forbidden(ApiError):
    status = 403
    type = "forbidden"


class UnsupportedMediaType(ApiError):
    status = 415
    type = "unsupported_media_type"


# Domain error class -> (status, type). The most specific class wins (checked in MRO order).
STATUS: dict[type[domain.SemsearchError], tuple[int, str]] = {
    domain.EmptyQueryError: (422, "empty_query"),
    domain.InvalidFilterError: (422, "invalid_filter"),
    domain.InvalidSearchError: (422, "invalid_request"),
    domain.ArticleTooLargeError: (413, "article_too_large"),
    domain.InvalidArticleError: (422, "invalid_article"),
    domain.ArticleNotFoundError: (404, "article_not_found"),
    domain.NoIndexError: (503, "no_index"),
    domain.IndexMismatchError: (503, "index_mismatch"),
    domain.CorruptIndexError: (503, "corrupt_index"),
    domain.ModelLoadError: (503, "model_unavailable"),
    domain.IndexBusyError: (409, "index_busy"),
    # The server's own folder refuses the write (read-only, a file, someone else's folder): not the client's
    # fault, and reads go on, so 503 until an operator fixes it.
    domain.IndexNotWritableError: (503, "index_not_writable"),
    # The disk, a quota or a file size limit ran out: RFC 4918's "unable to store the representation".
    domain.StorageWriteError: (507, "insufficient_storage"),
    domain.EmptyCorpusError: (422, "empty_corpus"),
    domain.InputPathError: (422, "bad_input"),
    domain.ConfigError: (500, "config_error"),
    domain.SemsearchError: (500, "internal_error"),
}


# An error body stays small whatever the request held: at most this many characters of message (each at most
# 6 bytes once JSON-escaped, so a body is under 4 KiB), and of a validation error at most a few problems.
MAX_MESSAGE_CHARS = 600
MAX_PROBLEMS = 5
_MAX_PART_CHARS = 100


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 40]}… ({len(text) - limit + 40:,} more characters)"


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape. The message is clipped, and a lone surrogate echoed from the request is escaped
    (`\\ud800`), since it cannot be sent as UTF-8."""
    message = clip(message.encode("utf-8", "backslashreplace").decode("utf-8"), MAX_MESSAGE_CHARS)
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def internal_error() -> JSONResponse:
    """The answer to an unexpected failure: the traceback goes to the server log, never to the client."""
    return error_response(500, "internal_error", "Internal error; the server log has the details")


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for err in errors[:MAX_PROBLEMS]:
        loc = list(err.get("loc", ()))
        if loc and loc[0] in ("body", "query", "path", "header", "cookie"):  # where it was, not which field
            loc = loc[1:]
        where = ".".join(str(p) for p in loc)
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        where, message = clip(where, _MAX_PART_CHARS), clip(message, _MAX_PART_CHARS * 2)
        parts.append(f"{where}: {message}" if where else message)
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS:,} more problems")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(domain.SemsearchError)
    async def _domain(_: Request, exc: domain.SemsearchError) -> JSONResponse:
        for cls in type(exc).__mro__:
            if cls in STATUS:
                status, kind = STATUS[cls]
                break
        return error_response(status, kind, str(exc))

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.type, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(list(exc.errors())))

    @app.exception_handler(ValidationError)
    async def _model_validation(_: Request, exc: ValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 400:  # FastAPI's own wording for a body it cannot decode says too little
            message = "The request body could not be read: send JSON encoded as UTF-8"
        return error_response(exc.status_code, kind, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Only for a failure outside ObserveMiddleware, which answers the app's own (with the request id).
        log.exception("unexpected error", exc_info=exc)
        return internal_error()


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Answer 413 with the JSON error shape when a request body exceeds `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._reject(scope, receive, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "payload_too_large", f"Request body over {self.max_bytes} bytes")
        await response(scope, receive, send)
