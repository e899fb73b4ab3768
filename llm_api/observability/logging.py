"""Process-wide logging set-up: text or JSON lines, each carrying the request id when there is one,
and, once known, who is asking (``principal_id``), the ``conversation_id`` and the ``model``.

The request id and those fields travel in context variables set by the request-id middleware (and
filled in by later steps with ``bind_log_fields``), so any log line emitted while serving a request
— in our code or a library's, in a task the request started — is tagged without passing them around.
Message contents and credentials are never log fields.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

#: The id of the request being served by the current task, if any.
current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
#: What else is known about that request: one dict per request, filled in as the request goes.
current_log_fields: ContextVar[dict[str, str] | None] = ContextVar("current_log_fields", default=None)


def bind_log_fields(**fields: str | None) -> None:
    """Tag the rest of the current request's log lines (``principal_id``, ``conversation_id``, ``model``)."""
    bound = current_log_fields.get()
    if bound is not None:
        bound.update({name: value for name, value in fields.items() if value is not None})


# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` and the request's bound fields from the context."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:  # the access log passes it explicitly
            record.request_id = current_request_id.get()
        for name, value in (current_log_fields.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            line["request_id"] = record.request_id
        line.update({key: value for key, value in record.__dict__.items() if key not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message key=value ...`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        plain = record.message
        if getattr(record, "request_id", None):
            record.message = f"[{record.request_id}] {record.message}"
        fields = " ".join(f"{key}={value}" for key, value in record.__dict__.items() if key not in _STANDARD)
        if fields:
            record.message = f"{record.message} {fields}"
        try:
            return super().formatMessage(record)
        finally:
            record.message = plain


def configure_logging(level: str, fmt: str) -> None:
    """Route every logger to stderr in the chosen format. Called once by the CLI, never by create_app."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's own access log would duplicate ours.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
