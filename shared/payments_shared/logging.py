"""JSON-lines logging with a correlation id, scrubbed of card numbers, tokens and keys.

`configure()` once per process; `correlation_id` is a context variable the entrypoints set per request or
message, so every line logged while handling it carries it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from payments_shared.carddata import mask_card_numbers

correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)

_SECRETS = re.compile(
    r"(sk|rk|pk)_(test|live)_[A-Za-z0-9]+"  # Stripe keys
    r"|whsec_[A-Za-z0-9+/=]+"  # Stripe webhook secrets
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"  # JWTs
    r"|(?i:bearer)\s+[^\s\"']+"
)
# color_message: uvicorn's copy of the message with ANSI colour codes, for terminals
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName", "color_message"}
_registered_secrets: list[str] = []


def register_secret(value: str | None) -> None:
    """Make the formatter remove this exact value (an API key, a transaction key) wherever it appears."""
    if value and len(value) >= 4 and value not in _registered_secrets:
        _registered_secrets.append(value)


def scrub(text: str) -> str:
    for secret in _registered_secrets:
        text = text.replace(secret, "[secret removed]")
    masked: str = _SECRETS.sub("[secret removed]", text)
    return mask_card_numbers(masked)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": correlation_id.get(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(_scrub_values(line), default=str, ensure_ascii=False)


def _scrub_values(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: _scrub_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_values(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return scrub(str(value))


class _HealingConnection(logging.Filter):
    """A RabbitMQ connection that drops and reconnects by itself (aio-pika's robust connection) is one warning
    ("unexpected connection close"), then "broker connection restored" (payments_shared.broker.rabbitmq), not
    ERRORs and tracebacks: aio-pika's channels each log an error as they find the transport gone, and aiormq's
    reader its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "aio_pika.tools" and "RobustChannel._on_close" in record.getMessage():
            return False  # a channel's close callback meeting the closed connection: the reconnection reopens it
        if record.name == "aiormq.connection":
            record.exc_info = None  # the reader's traceback of the close just logged
            if record.levelno > logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aio_pika", "aiormq", "httpx", "httpcore", "stripe", "coredis"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for broker_logger in ("aio_pika.tools", "aiormq.connection"):
        if not any(isinstance(known, _HealingConnection) for known in logging.getLogger(broker_logger).filters):
            logging.getLogger(broker_logger).addFilter(_HealingConnection())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
