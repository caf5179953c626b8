"""`python -m bot run` refuses to start without what it needs; `health` reads the heartbeat the
running bot writes; tokens never reach the log."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from bot.heartbeat import heartbeat_path
from bot.logs import RedactSecrets
from bot.store.db import Database, iso, utcnow
from tests.cli.test_quote import bot, clean_env


def test_run_without_a_discord_token_says_what_is_missing(tmp_path):
    for argv in (("run",), ()):  # `python -m bot` alone runs the bot
        result = bot(
            *argv,
            env=clean_env(BOT_DB_PATH=str(tmp_path / "db.sqlite3")),
        )
        assert result.returncode != 0
        assert "DISCORD_TOKEN" in result.stderr


async def create_database(path: Path) -> None:
    async with Database(path):
        pass


def write_beat(tmp_path, *, age: timedelta, ready: bool = True, db: str = "bot.sqlite3") -> None:
    beat = {"at": iso(utcnow() - age), "ready": ready, "guilds": 2, "jobs_running": 1}
    heartbeat_path(tmp_path / db).write_text(json.dumps(beat))


def health(tmp_path, db: str = "bot.sqlite3"):
    env = clean_env(BOT_DB_PATH=str(tmp_path / db), DISCORD_TOKEN="x" * 40)
    return bot("health", env=env)


def test_health_follows_the_heartbeat(tmp_path):
    asyncio.run(create_database(tmp_path / "bot.sqlite3"))  # as the running bot has
    missing = health(tmp_path)
    assert missing.returncode == 1 and "no heartbeat" in missing.stderr
    write_beat(tmp_path, age=timedelta(seconds=5))
    fresh = health(tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert "2 guild(s)" in fresh.stdout
    write_beat(tmp_path, age=timedelta(minutes=5))
    stale = health(tmp_path)
    assert stale.returncode == 1 and "old" in stale.stderr
    write_beat(tmp_path, age=timedelta(seconds=5), ready=False)
    assert health(tmp_path).returncode == 1


def test_each_database_in_a_folder_has_its_own_heartbeat(tmp_path):
    # Two bots on two databases in one data folder (the lock allows it): one's heartbeat
    # must not make the other healthy, nor one's orderly stop make the other unhealthy.
    for db in ("prod.sqlite3", "staging.sqlite3"):
        asyncio.run(create_database(tmp_path / db))
    write_beat(tmp_path, age=timedelta(seconds=5), db="prod.sqlite3")
    assert health(tmp_path, "prod.sqlite3").returncode == 0
    stopped = health(tmp_path, "staging.sqlite3")
    assert stopped.returncode == 1 and "no heartbeat" in stopped.stderr


def test_tokens_are_redacted_from_every_log_line():
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.secret-discord-token"
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Keep()
    handler.addFilter(RedactSecrets([token, "civitai-secret-token"]))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("connecting with %s", token)
        logger.error("bad response for civitai-secret-token: %r", {"auth": token})
    finally:
        logger.removeHandler(handler)
    assert records and all(token not in line and "civitai-secret" not in line for line in records)
    assert "***" in records[0]


@pytest.mark.parametrize(
    "token",
    [
        "aW50ZXJhY3Rpb246MTIzNDU2Nzg5OkFCQ0RFRkdISUpLTE1OT1BR",
        # Discord does not document the format (it may change): whatever stands in the path.
        "aW50ZXJhY3Rpb246MTIz%2BNDU2Nzg5Ok+FCQ0RFRkdISUp=LTE1OT1BR",
    ],
)
def test_interaction_tokens_in_webhook_urls_are_redacted(token: str):
    record = logging.LogRecord(
        "discord.webhook",
        logging.DEBUG,
        __file__,
        1,
        "PATCH https://discord.com/api/v10/webhooks/1234567890/%s/messages/@original",
        (token,),
        None,
    )
    RedactSecrets([]).filter(record)
    assert token not in record.getMessage()
    assert "/webhooks/1234567890/***/messages" in record.getMessage()


def test_signatures_in_a_stores_query_string_are_redacted():
    """httpx logs each request's URL at INFO: a store that signs in the query (S3, Azure,
    Discord's CDN) has its signature kept out, the rest of the URL left to read."""
    url = (
        "https://blobs.example.com/img/1.png?X-Amz-Credential=AKIAEXAMPLE%2F20260101"
        "&X-Amz-Signature=5f1c0ffee0ddba11&exp=1796&sig=c0ffee0ddba11c0ffee"
    )
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, 'HTTP Request: GET %s "HTTP/1.1 200 OK"', (url,), None
    )
    RedactSecrets([]).filter(record)
    shown = record.getMessage()
    assert "AKIAEXAMPLE" not in shown and "5f1c0ffee" not in shown and "c0ffee0dd" not in shown
    assert "/img/1.png?X-Amz-Credential=***&X-Amz-Signature=***&exp=1796&sig=***" in shown


def test_a_second_bot_on_the_same_database_refuses_to_start(tmp_path):
    from bot.cli.run_cmd import hold_instance_lock

    db = tmp_path / "bot.sqlite3"
    with hold_instance_lock(db):
        result = bot("run", env=clean_env(BOT_DB_PATH=str(db), DISCORD_TOKEN="x" * 40))
    assert result.returncode == 2
    assert "already running" in result.stderr


def test_a_token_inside_an_exception_and_its_traceback_is_redacted():
    """log.exception of an error whose text (and a frame's source line) carries a token."""
    token = "MTIzNDU2Nzg5MDEyMzQ1Njc4.secret-discord-token"
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactSecrets([token]))
    logger = logging.getLogger("test.redaction.traceback")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        try:
            raise ConnectionError(f"login failed for Bot {token}")
        except ConnectionError:
            logger.exception("could not connect")
        logger.warning("where we were", stack_info=True, extra={"x": token})
    finally:
        logger.removeHandler(handler)
    text = "\n".join(lines)
    assert "Traceback (most recent call last)" in text and "ConnectionError" in text
    assert token not in text
    assert "login failed for Bot ***" in text
