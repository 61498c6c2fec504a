"""The server's logs, uvicorn's records and semsearch's alike: plain text lines (the default; request lines on
stdout as uvicorn's were, the rest on stderr) or one JSON object a line on stderr, where each record logged in the
course of a request carries that request's id."""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The request being answered in this context (a request's task, and the worker threads it starts).
REQUEST_ID: ContextVar[str | None] = ContextVar("semsearch_request_id", default=None)
# A client's own `x-request-id` is kept when it is a short token of these characters; otherwise one is made.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
ACCESS_LOGGER = "semsearch.access"


def request_id(given: bytes | None) -> str:
    """The client's `x-request-id` when it is a short safe token, else a new random one."""
    if given is not None:
        try:
            text = given.decode("ascii")
        except UnicodeDecodeError:
            text = ""
        if _SAFE_ID.fullmatch(text):
            return text
    return uuid.uuid4().hex


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the request id when there is one, and the
    record's `fields` (an access record's method, route, status, duration)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (current := REQUEST_ID.get()) is not None:
            entry["request_id"] = current
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_config(log_format: str) -> dict[str, Any]:
    """The `logging.config.dictConfig` for `semsearch serve` (uvicorn applies it). JSON: every record on stderr.
    Plain: uvicorn's layout, request lines on stdout and the rest on stderr. uvicorn's own access log is off:
    semsearch's names the route template, never the query string."""
    formatter: dict[str, Any] = (
        {"()": "semsearch.api.logs.JsonFormatter"}
        if log_format == "json"
        else {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s", "use_colors": None}
    )
    requests_to = "ext://sys.stderr" if log_format == "json" else "ext://sys.stdout"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"},
            "requests": {"class": "logging.StreamHandler", "formatter": "default", "stream": requests_to},
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "semsearch": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            ACCESS_LOGGER: {"handlers": ["requests"], "level": "INFO", "propagate": False},
        },
    }
