"""Logging for the running bot: one configuration at the entry point, tokens redacted from
every line — the message, an exception's text and its traceback alike."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# Interaction tokens travel in webhook and callback URLs, which discord.py logs at DEBUG.
INTERACTION_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[A-Za-z0-9_.\-]{20,}")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Tokens never reach a log line, whatever a library puts in one (or in an exception)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 8]
        self._formatter = logging.Formatter()

    def redact(self, text: str) -> str:
        text = INTERACTION_TOKEN.sub(r"\1***", text)
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters use exc_text when it is set: format the traceback once, redacted.
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def configure(level: str, secrets: Iterable[str]) -> None:
    """The root logger: one stream handler, redacted; discord.py's gateway chatter quieted."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("discord.gateway").setLevel(logging.WARNING)
