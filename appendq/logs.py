"""Logging, configured only by entry points: text or JSON lines on stderr, phone numbers masked and
known secrets scrubbed from every line, whoever logged it (httpx, Celery, us). What counts as a
phone number or a secret is decided in ``appendq.redact``."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from appendq.redact import scrub, scrub_value, settings_secrets
from appendq.settings import Settings

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class Scrubber(logging.Filter):
    """Scrubs every record it sees: its message, its exception text, its ``extra`` fields."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, scrub_value(value, self.secrets))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                event[key] = value
        if record.exc_text:
            event["exception"] = record.exc_text
        return json.dumps(event, default=str)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    handler.addFilter(Scrubber(settings_secrets(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Per-request and per-task chatter: our own lines say what a tick did when it did something.
    for noisy in ("httpx", "httpcore", "celery.app.trace", "celery.worker.strategy", "celery.beat"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
