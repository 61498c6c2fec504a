"""What the routers share: the loaded index from the app's state, the writer-token and JSON-body checks (run
before a write's body is read), and the error responses each route documents."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from semsearch.api.errors import Forbidden, Unauthorized, UnsupportedMediaType
from semsearch.api.schemas import ErrorOut
from semsearch.search.live import LiveSearcher
from semsearch.search.searcher import Searcher

_DESCRIPTIONS = {
    400: "Body is not UTF-8 JSON",
    401: "No bearer token",
    403: "Wrong token, or writes are off",
    404: "Not found",
    409: "Another process is writing the index",
    413: "Body too large",
    415: "Body is not JSON",
    422: "Invalid request",
    503: "No index",
}


def responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """The OpenAPI entries of these error statuses, each with the one JSON error shape."""
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]} for code in codes}


def loaded_index(request: Request) -> LiveSearcher:
    """The app's live index, or a 503 saying why none is loaded."""
    live: LiveSearcher = request.app.state.live
    if not live.loaded:
        raise live.unavailable()  # its own class: a corrupt file is `corrupt_index`, another model `index_mismatch`
    return live


def get_searcher(request: Request) -> Iterator[Searcher]:
    """The current generation's searcher for the length of one request, or a 503 saying why there is none."""
    live = loaded_index(request)
    with live.use() as searcher:
        yield searcher


def require_json(request: Request) -> None:
    """Bodies are JSON: anything else is a 415 before it is parsed."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise UnsupportedMediaType(f"Send the body as JSON with `Content-Type: application/json` (got {kind!r})")


def require_writer(request: Request) -> None:
    """Writes need the configured bearer token: 401 without one, 403 with a wrong one or none configured."""
    expected: str = request.app.state.settings.api_token
    if not expected:
        raise Forbidden("Writes are off on this server: start it with SEMSEARCH_API_TOKEN set to a secret token")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized("Writes need `Authorization: Bearer <token>`")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Forbidden("The bearer token is not the one this server accepts")


class WriteRoute(APIRoute):
    """A write: the bearer token, then the body's media type, are checked before the body is read or parsed, so
    a request without the token costs no parsing and learns nothing from the body's validation errors."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_body = self.body_field is not None

        async def checked(request: Request) -> Response:
            require_writer(request)
            if takes_body:
                require_json(request)
            return await handler(request)

        return checked


SearcherDep = Annotated[Searcher, Depends(get_searcher)]
JSON_BODY = [Depends(require_json)]
