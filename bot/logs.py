"""Logging for the running bot: one configuration at the entry point, tokens redacted from
every line — the message, an exception's text and its traceback alike — as text or as one
JSON object per line, each naming the job (and guild) it is about when that is known."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

# Interaction tokens travel in webhook and callback URLs, which discord.py logs at DEBUG. Their
# format is not documented (it may change): all that stands in that part of the path.
INTERACTION_TOKEN = re.compile(r"(/(?:webhooks|interactions)/\d+/)[^/?#\s'\"]{20,}")
# ...and as a field of the payloads it logs (the gateway's INTERACTION_CREATE event).
TOKEN_FIELD = re.compile(r"""(["'](?:token|access_token|webhook_token)["']\s*:\s*["'])[^"']+""")
# Signed URLs: whoever holds one fetches the blob (a withheld image too) until it expires.
# The orchestrator signs in the path; other stores sign in the query.
BLOB_TOKEN = re.compile(r"(/blobs/(?:content|blocked|archive)/)[A-Za-z0-9_.~%\-]+")
SIGNED_QUERY = re.compile(
    r"([?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token"
    r"|x-goog-signature|x-goog-credential|hm|token)=)[^&\s'\"#]+",
    re.IGNORECASE,
)
_PATTERNS = (INTERACTION_TOKEN, TOKEN_FIELD, BLOB_TOKEN, SIGNED_QUERY)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The job (and guild) the running asyncio task works for. Context variables must be module
# level; each task has its own value (the engine binds it at the start of a job's task).
JOB_ID: ContextVar[str | None] = ContextVar("job_id", default=None)
GUILD_ID: ContextVar[int | None] = ContextVar("guild_id", default=None)


def bind_job(job_id: str | None, guild_id: int | None = None) -> None:
    """Name this job on every log line of the current task (and the tasks it starts)."""
    JOB_ID.set(job_id)
    GUILD_ID.set(guild_id)


class RedactSecrets(logging.Filter):
    """Tokens never reach a log line, whatever a library puts in one (or in an exception)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 8]
        self._formatter = logging.Formatter()

    def redact(self, text: str) -> str:
        for pattern in _PATTERNS:
            text = pattern.sub(r"\1***", text)
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


class JobContext(logging.Filter):
    """Copies the task's job and guild onto each record (unless the call gave its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = JOB_ID.get()
        if getattr(record, "guild_id", None) is None:
            record.guild_id = GUILD_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """The plain format, with ` job=<id>` after the message when known (for grep)."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        job_id = getattr(record, "job_id", None)
        return f"{line} job={job_id}" if job_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO-8601, UTC), level, logger, message, and exc_info,
    stack_info, job_id, guild_id when present."""

    def format(self, record: logging.LogRecord) -> str:
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("job_id", "guild_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_handler(
    secrets: Iterable[str], fmt: str = "text", stream: TextIO | None = None
) -> logging.Handler:
    """A stream handler that redacts first, then adds the job context, then formats."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(JobContext())
    return handler


def configure(level: str, secrets: Iterable[str], fmt: str = "text") -> None:
    """The root logger: one stream handler, redacted; discord.py's gateway chatter quieted."""
    root = logging.getLogger()
    root.handlers[:] = [make_handler(secrets, fmt)]
    root.setLevel(level.upper())
    logging.getLogger("discord.gateway").setLevel(logging.WARNING)
