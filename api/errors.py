"""One JSON error shape for every failure: `{"error": {"type", "message"}}`, and the status of each error class."""

from __future__ import annotations

import json
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


class ServiceUnavailable(ApiError):
    status = 503
    type = "no_index"


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
    domain.InvalidArticleError: (422, "invalid_article"),
    domain.ArticleNotFoundError: (404, "article_not_found"),
    domain.NoIndexError: (503, "no_index"),
    domain.IndexMismatchError: (503, "index_mismatch"),
    domain.CorruptIndexError: (503, "corrupt_index"),
    domain.ModelLoadError: (503, "model_unavailable"),
    domain.IndexBusyError: (409, "index_busy"),
    domain.EmptyCorpusError: (422, "empty_corpus"),
    domain.InputPathError: (422, "bad_input"),
    domain.ConfigError: (500, "config_error"),
    domain.SemsearchError: (500, "internal_error"),
}


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status, headers=headers)


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
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
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "internal_error", "Internal error; the server log has the details")


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
        body = json.dumps(
            {"error": {"type": "payload_too_large", "message": f"Request body over {self.max_bytes} bytes"}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
