"""How the server processes log: plain text, or one JSON object per line
(``--log-format json``, ``WAYMARK_LOG_FORMAT``), for uvicorn's loggers and Waymark's alike.

A JSON line holds ``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``,
``request_id`` when it was logged while a request was answered, and ``exception`` (the
traceback) when there is one. The request id is the one
:class:`~waymark.api.problems.RequestGuard` gives the request (and sends back as
``X-Request-ID``); it is kept in :data:`REQUEST_ID`, a context variable, and a filter on
every handler adds it to the records.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
from contextvars import ContextVar
from enum import StrEnum
from typing import Any

#: the id of the request being answered in this context (None outside requests)
REQUEST_ID: ContextVar[str | None] = ContextVar("waymark_request_id", default=None)

FORMAT_SETTING = "WAYMARK_LOG_FORMAT"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def log_format(explicit: str | None = None) -> LogFormat:
    """The format given, else ``WAYMARK_LOG_FORMAT``, else text; ValueError naming the
    setting for anything else."""
    value = explicit if explicit is not None else os.environ.get(FORMAT_SETTING, "") or "text"
    try:
        return LogFormat(value.lower())
    except ValueError:
        raise ValueError(f"{FORMAT_SETTING} is {value!r}: use text or json") from None


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged while a request is answered."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = REQUEST_ID.get()
        if rid is not None:
            record.request_id = rid
        return True


class StandardStream(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` (or ``sys.stdout``) is when a record comes, not
    to the one there was when logging was configured: a host that swaps them (a test
    runner, an embedding program) never leaves the handler writing to a closed stream."""

    def __init__(self, which: str = "stderr") -> None:
        self.which = which
        super().__init__()

    @property
    def stream(self) -> Any:
        return getattr(sys, self.which)

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always the current one


_TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"
_JSON = "%(levelname)s %(name)s %(message)s"  # and "time": ISO 8601, UTC
_JSON_NAMES = {"levelname": "level", "name": "logger", "exc_info": "exception"}


def log_config(fmt: LogFormat, level: str) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for a server process in ``fmt`` at ``level``:
    uvicorn's loggers (it applies it in each worker: ``uvicorn.run(log_config=...)``) and
    the root logger, which Waymark's loggers reach, all through the same handler on
    stderr (uvicorn's access lines on stdout)."""
    level = level.upper()
    formatter: dict[str, Any]
    if fmt is LogFormat.json:
        from pythonjsonlogger.core import RESERVED_ATTRS

        formatter = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": _JSON,
            "rename_fields": _JSON_NAMES,
            "timestamp": "time",
            # uvicorn's copy of its message with terminal colours: not for a log file
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
        }
    else:
        formatter = {"format": _TEXT}
    handler = {"formatter": "waymark", "filters": ["request_id"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"waymark": formatter},
        "handlers": {
            "stderr": {
                **handler,
                "()": "waymark.logs.StandardStream",
                "which": "stderr",
            },
            "stdout": {
                **handler,
                "()": "waymark.logs.StandardStream",
                "which": "stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["stdout"], "level": level, "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": level},
    }


def configure(fmt: LogFormat, level: str) -> None:
    """Log this process as :func:`log_config` says (the collector's, say)."""
    logging.config.dictConfig(log_config(fmt, level))
