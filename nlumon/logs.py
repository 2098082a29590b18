"""Log set-up for every command: readable lines for people, or one JSON object per line for log shippers.

``log_format = "json"`` (``NLUMON_LOG_FORMAT=json``) turns each record into an object with ``ts``, ``level``,
``logger`` and ``message``, plus whatever the call passed in ``extra`` (the worker adds ``worker``, ``topic``,
``partition``, ``offset``, ``reason`` to dead letters, for example), so Loki, Elasticsearch or CloudWatch
can filter on fields instead of parsing text.

    >>> record = logging.LogRecord("streams.agents", logging.WARNING, __file__, 1, "dead-lettered %s", ("x",), None)
    >>> record.reason = "text is empty"
    >>> line = json.loads(JsonFormatter().format(record))
    >>> line["level"], line["logger"], line["message"], line["reason"]
    ('WARNING', 'streams.agents', 'dead-lettered x', 'text is empty')
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
NOISY = ("kafka", "aiokafka", "clickhouse_driver")  # their INFO lines are per connection: WARNING unless verbose
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def scrubbed_copy(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` with personal data scrubbed from its message, ``extra`` strings and traceback.

    Formatters scrub a copy, never the record itself: other handlers of the same record (pytest's log
    capture, a second handler) keep seeing it whole, ``exc_info`` included."""
    from nlumon.pii import PiiLogFilter

    copy = logging.makeLogRecord(vars(record))
    PiiLogFilter().filter(copy)
    return copy


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT` lines, with personal data scrubbed (:func:`scrubbed_copy`)."""

    def __init__(self, fmt: str | None = TEXT_FORMAT, *args: Any, **kwargs: Any) -> None:
        super().__init__(fmt, *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        return super().format(scrubbed_copy(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record: the standard fields, the ``extra`` ones, and the traceback if any, with
    personal data scrubbed (:func:`scrubbed_copy`)."""

    def format(self, record: logging.LogRecord) -> str:
        record = scrubbed_copy(record)
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({key: value for key, value in vars(record).items() if key not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # the scrubbed traceback (scrubbed_copy)
            line["exception"] = record.exc_text
        return json.dumps(line, default=str)


def logging_config(log_format: str = "text", *, verbose: bool = False) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dict: stderr, ``log_format`` "text" or "json"."""
    level = "DEBUG" if verbose else "INFO"
    formatter = {"()": JsonFormatter} if log_format == "json" else {"()": TextFormatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"nlumon": formatter},
        # no personal data in any log line: the formatters scrub a copy of each record
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "nlumon", "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {name: {"level": level if verbose else "WARNING"} for name in NOISY},
    }


def setup_logging(log_format: str = "text", *, verbose: bool = False) -> None:
    logging.config.dictConfig(logging_config(log_format, verbose=verbose))
