"""Logs as operators read them: text or one JSON object per line, each line of a job's work
naming the job, tokens redacted in either format."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import pytest

from bot.config import load_settings
from bot.logs import bind_job, make_handler
from tests.discord.harness import finish, world
from tests.discord_admin.helpers import request

TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.secret-discord-token"


@contextmanager
def captured(logger: logging.Logger, fmt: str, secrets: list[str]) -> Iterator[io.StringIO]:
    """What `python -m bot run` installs on the root logger, writing to a buffer."""
    stream = io.StringIO()
    handler = make_handler(secrets, fmt, stream)
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_parse_and_a_token_inside_an_exception_is_redacted():
    logger = logging.getLogger("test.logs.json")
    logger.propagate = False
    with captured(logger, "json", [TOKEN]) as stream:
        try:
            raise ConnectionError(f"login failed for Bot {TOKEN}")
        except ConnectionError:
            logger.exception("could not connect with %s", TOKEN)
        logger.warning("plain line")
    assert TOKEN not in stream.getvalue()
    failure, plain = json_lines(stream)
    assert failure["level"] == "ERROR" and failure["logger"] == "test.logs.json"
    assert failure["message"] == "could not connect with ***"
    assert "Traceback (most recent call last)" in failure["exc_info"]
    assert "ConnectionError: login failed for Bot ***" in failure["exc_info"]
    when = datetime.fromisoformat(failure["time"])
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0
    assert plain["message"] == "plain line" and "exc_info" not in plain
    assert "job_id" not in plain  # not inside a job's work


async def test_each_task_logs_its_own_job_in_text_and_json():
    logger = logging.getLogger("test.logs.context")
    logger.propagate = False

    async def work(job_id: str, guild_id: int) -> None:
        bind_job(job_id, guild_id)
        await asyncio.sleep(0)  # interleave with the other job's task
        logger.warning("working")

    with captured(logger, "text", []) as text, captured(logger, "json", []) as structured:
        await asyncio.gather(
            asyncio.create_task(work("j1", 11)), asyncio.create_task(work("j2", 22))
        )
        logger.warning("outside any job")
    lines = text.getvalue().splitlines()
    assert sorted(line.rsplit(" ", 1)[-1] for line in lines[:2]) == ["job=j1", "job=j2"]
    assert lines[2].endswith("outside any job")
    records = json_lines(structured)
    assert sorted((r["job_id"], r["guild_id"]) for r in records[:2]) == [("j1", 11), ("j2", 22)]
    assert "job_id" not in records[2] and "guild_id" not in records[2]


async def test_a_jobs_log_lines_carry_its_id_including_the_clients_retry_warnings(tmp_path):
    """A 503 on submit: the orchestrator client's retry warning names the job and guild."""
    root = logging.getLogger()
    civitai = {"retry_max_delay_seconds": 0.01}
    async with world(tmp_path, civitai=civitai) as w:
        await w.grant(1000)
        w.sim.fault(503, route="submit")
        with captured(root, "json", ["test-token"]) as stream:
            job, _ = await finish(w, await request(w, "a retried submit"))
    records = json_lines(stream)
    retries = [r for r in records if r["logger"] == "bot.civitai.client" and "503" in r["message"]]
    assert retries, records
    for record in retries:
        assert record["job_id"] == job.id and record["guild_id"] == w.guild
        assert record["level"] == "WARNING"


@contextmanager
def at_debug(logger: logging.Logger) -> Iterator[None]:
    """Every library's DEBUG lines reach the handler (discord.py's gateway events included)."""
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(level)


async def test_a_jobs_whole_debug_log_carries_no_interaction_token_nor_signed_blob_url(tmp_path):
    """The interaction token travels in the gateway's INTERACTION_CREATE payload as well as in
    the webhook URLs, and the orchestrator's blob URLs are signed (whoever holds one sees the
    image, a withheld one too): none of them belongs in an operator's log."""
    root = logging.getLogger()
    async with world(tmp_path) as w:
        await w.grant(1000)
        with at_debug(root), captured(root, "text", [w.fake.bot_token, w.sim.token]) as stream:
            await finish(w, await request(w, "a logged lighthouse"))
            await w.fake.settle()
        tokens = list(w.fake.interactions.by_token)
    text = stream.getvalue()
    assert "/callback has returned" in text and "WebSocket Event" in text  # the lines are there
    assert tokens and not [t for t in tokens if t in text or t[-24:] in text]
    signed = re.findall(r"/blobs/content/([^\s\"']+)", text)  # fetching the result
    assert signed and set(signed) == {"***"}, signed


def test_the_format_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert load_settings().logging.format == "text"
    monkeypatch.setenv("BOT_LOGGING__FORMAT", "JSON")
    assert load_settings().logging.format == "json"
