"""Logging, configured only by entry points: text or JSON lines on stderr, phone numbers masked and
known secrets scrubbed from every line, whoever logged it (httpx, Celery, us)."""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from appendq.settings import Settings

_PHONE = re.compile(r"(?<![\w-])(\+?\d[\d\-. ()]{5,}\d)(?![\w-])")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_MAX_DEPTH = 20


def mask_phones(text: str) -> str:
    """Replace every run that looks like a phone number by its last four digits."""

    def _mask(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group(1))
        if len(digits) < 7 or _DATE.fullmatch(match.group(1)):
            return match.group(1)
        return "*" * (len(digits) - 4) + digits[-4:]

    return _PHONE.sub(_mask, text)


class Scrubber(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return mask_phones(text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD:
                setattr(record, key, self.scrub_value(value))
        return True

    def scrub_value(self, value: object, depth: int = 0) -> object:
        """Scrub a structured ``extra`` field, however nested (Celery's ``data.traceback`` is a
        dict): strings scrubbed, containers walked, any other object by its text (the JSON
        formatter would print its ``str`` anyway). Numbers, booleans and None pass unchanged."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if depth >= _MAX_DEPTH:
            return "<nested too deep>"
        if isinstance(value, dict):
            return {self.scrub(str(k)): self.scrub_value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.scrub_value(v, depth + 1) for v in value]
        return self.scrub(str(value))


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
        formatter.converter = __import__("time").gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    handler.addFilter(
        Scrubber(
            [
                settings.livevox_password.get_secret_value(),
                settings.livevox_access_token.get_secret_value(),
                *(t.get_secret_value() for t in settings.api_tokens),
            ]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    # Per-request and per-task chatter: our own lines say what a tick did when it did something.
    for noisy in ("httpx", "httpcore", "celery.app.trace", "celery.worker.strategy", "celery.beat"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
