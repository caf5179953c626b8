"""`python -m bot ledger …` and `python -m bot jobs` as real subprocesses on a real database."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.store.db import Conn, Database
from bot.store.jobs import JobStatus, JobStore, NewJob
from bot.store.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]
GUILD, MEMBER = 4242, 777


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    config = tmp_path / "empty.toml"
    config.write_text("", encoding="utf-8")
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith(("BOT_", "DISCORD_", "CIVITAI_"))
    }
    clean.update(BOT_DB_PATH=str(tmp_path / "cli.sqlite3"), BOT_CONFIG=str(config))
    return clean


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def entries(env: dict[str, str]) -> list[tuple]:
    with sqlite3.connect(env["BOT_DB_PATH"]) as conn:
        return conn.execute(
            "SELECT guild_id, member_id, kind, amount, delta_grant, reason FROM ledger_entries"
        ).fetchall()


def test_grant_shows_in_balance_history_and_export(env: dict[str, str]) -> None:
    out = run(env, "ledger", "grant", str(GUILD), str(MEMBER), "1500", "--reason", "prize, 1st")
    assert "1,500" in out.stdout
    assert entries(env) == [(GUILD, MEMBER, "grant", 1500, 1500, "prize, 1st")]

    table = run(env, "ledger", "balance", str(GUILD), str(MEMBER)).stdout
    cells = [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()]
    lines = {c[0]: c[-1] for c in cells if len(c) == 2}
    assert lines["available"] == "1,500"
    assert lines["grants"] == "1,500"
    data = json.loads(run(env, "ledger", "balance", str(GUILD), str(MEMBER), "--json").stdout)
    assert (data["available"], data["grant_balance"], data["held"]) == (1500, 1500, 0)
    # Another member and another guild have nothing.
    other = json.loads(run(env, "ledger", "balance", "1", str(MEMBER), "--json").stdout)
    assert other["available"] == 0

    history = run(env, "ledger", "history", str(GUILD), str(MEMBER)).stdout.splitlines()
    assert history[0].split() == ["time", "(UTC)", "kind", "amount", "change", "job", "reason"]
    assert set(history[1].replace(" ", "")) == {"-"}
    assert "grant" in history[2] and "1500" in history[2] and "+1500" in history[2]
    assert history[2].rstrip().endswith("prize, 1st")
    rows = json.loads(run(env, "ledger", "history", str(GUILD), str(MEMBER), "--json").stdout)
    assert [(r["kind"], r["amount"], r["delta"], r["reason"]) for r in rows] == [
        ("grant", 1500, 1500, "prize, 1st")
    ]

    run(env, "ledger", "grant", str(GUILD), str(MEMBER), "25", "--reason", "bonus")
    rows = json.loads(run(env, "ledger", "history", str(GUILD), str(MEMBER), "--json").stdout)
    assert [r["amount"] for r in rows] == [25, 1500]  # newest first

    exported = run(env, "ledger", "export", str(GUILD)).stdout
    records = list(csv.DictReader(io.StringIO(exported)))
    assert [
        (r["member_id"], r["kind"], r["amount"], r["balance_after"], r["reason"]) for r in records
    ] == [
        (str(MEMBER), "grant", "1500", "1500", "prize, 1st"),
        (str(MEMBER), "grant", "25", "1525", "bonus"),
    ]
    assert run(env, "ledger", "export", "1").stdout.count("\n") == 1  # header only


@pytest.mark.parametrize("amount", ["-5", "0", "10000001"])
def test_grant_out_of_range_fails_with_the_range(env: dict[str, str], amount: str) -> None:
    proc = run(env, "ledger", "grant", str(GUILD), str(MEMBER), amount, "--reason", "x", ok=False)
    assert proc.returncode != 0
    assert "1 to 10,000,000" in proc.stderr
    assert "Traceback" not in proc.stderr
    if Path(env["BOT_DB_PATH"]).exists():
        assert entries(env) == []


@pytest.mark.parametrize(
    "args",
    [
        ["ledger", "grant", "-1", str(MEMBER), "5", "--reason", "x"],
        ["ledger", "grant", str(GUILD), "0", "5", "--reason", "x"],
        ["ledger", "grant", "99999999999999999999999", str(MEMBER), "5", "--reason", "x"],
        ["ledger", "balance", str(GUILD), "99999999999999999999999"],
        ["ledger", "export", "99999999999999999999999"],
        ["audit", "--guild", "99999999999999999999999"],
        ["jobs", "--limit", "99999999999999999999"],
    ],
    ids=lambda a: " ".join(a[:3]),
)
def test_a_number_that_is_no_discord_id_is_one_line(env: dict[str, str], args: list[str]) -> None:
    """Two ids pasted together, a minus sign picked up with them: a traceback (OverflowError
    from SQLite), or worse "granted 5 Buzz" to guild -1, which no server can ever be."""
    run(env, "ledger", "grant", str(GUILD), str(MEMBER), "1", "--reason", "setup")
    proc = run(env, *args, ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    [line] = [x for x in proc.stderr.splitlines() if "error:" in x]
    assert "Discord id" in line or "too large" in line, line
    assert len(entries(env)) == 1  # only the setup grant


async def seed_jobs(path: str) -> None:
    async with Database(path) as db:
        jobs, ledger = JobStore(db), Ledger(db)

        def seed(tx: Conn) -> None:
            ledger.grant_in(tx, GUILD, MEMBER, 10_000, actor_id=None, reason="seed")
            for status in JobStatus:
                job_id = f"job-{status.value}"
                jobs.insert_in(
                    tx,
                    NewJob(
                        id=job_id,
                        guild_id=GUILD,
                        channel_id=1,
                        member_id=MEMBER,
                        model="gpt-image-1",
                        operation="createImage",
                        options={"prompt": "a cat"},
                        step={},
                        estimate=300,
                        status=status,
                    ),
                )
                ledger.place_hold_in(tx, GUILD, MEMBER, job_id, 300)

        await db.write(seed)


def test_jobs_active_lists_only_active_jobs(env: dict[str, str]) -> None:
    asyncio.run(seed_jobs(env["BOT_DB_PATH"]))
    active = {"queued", "submitted", "running", "delivering"}

    listed = json.loads(run(env, "jobs", "--active", "--json").stdout)
    assert {j["status"] for j in listed} == active
    assert {j["id"] for j in listed} == {f"job-{s}" for s in active}
    assert all(j["held"] == 300 and j["guild"] == GUILD for j in listed)

    table = run(env, "jobs", "--active").stdout.splitlines()
    assert table[0].split()[:2] == ["job", "created"]
    body = [line.split()[0] for line in table[2:] if line.strip()]
    assert sorted(body) == sorted(f"job-{s}" for s in active)

    everything = json.loads(run(env, "jobs", "--json").stdout)
    assert {j["status"] for j in everything} == {s.value for s in JobStatus}


SHORT_BUSY_TIMEOUT = (
    "import sys, bot.store.db as db; db.BUSY_TIMEOUT_MS = 300\n"
    "from bot.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def test_a_grant_while_another_process_holds_the_write_lock_is_one_line(
    env: dict[str, str],
) -> None:
    run(env, "ledger", "grant", str(GUILD), str(MEMBER), "5", "--reason", "setup")
    other = sqlite3.connect(env["BOT_DB_PATH"], isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # an operator's sqlite3 shell with a write open
    try:
        grant = ["ledger", "grant", str(GUILD), str(MEMBER), "5", "--reason", "while locked"]
        proc = subprocess.run(
            [sys.executable, "-c", SHORT_BUSY_TIMEOUT, *grant],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: the database is busy (another process holds its write lock); try again"
    ]
    assert [e[3] for e in entries(env)] == [5]  # nothing half-done


async def spent_last_week(path: str) -> None:
    """The guild's default is 1,000 a week; the member spent 700 of last week's."""
    last_week = datetime.now(UTC) - timedelta(days=7)
    async with Database(path) as db:
        jobs, ledger = JobStore(db, lambda: last_week), Ledger(db, clock=lambda: last_week)

        def spend(tx: Conn) -> None:
            ledger.set_allowance_in(tx, GUILD, "default", 0, 1000, "weekly", actor_id=1)
            jobs.insert_in(
                tx,
                NewJob(
                    id="job-last-week",
                    guild_id=GUILD,
                    channel_id=1,
                    member_id=MEMBER,
                    model="gpt-image-1",
                    operation="createImage",
                    options={"prompt": "a cat"},
                    step={},
                    estimate=700,
                    status=JobStatus.QUEUED,
                ),
            )
            ledger.place_hold_in(tx, GUILD, MEMBER, "job-last-week", 700)
            ledger.settle_in(tx, "job-last-week", 700)

        await db.write(spend)


async def available_at_next_use(path: str) -> int:
    """What the member has once the bot refills them (their next request)."""
    async with Database(path) as db:
        ledger = Ledger(db)
        account, _ = await db.write(ledger.refresh_in, GUILD, MEMBER)
        return account.total


def test_a_take_when_this_weeks_refill_is_due_is_not_given_back_by_it(
    env: dict[str, str],
) -> None:
    """`ledger balance` says 1,000 (this week's refill, due at the next use, included). A take
    of 300 must leave 700: it took the 300 left from last week, and the refill at the member's
    next request topped them up to 1,000 again, as if nothing had been taken."""
    asyncio.run(spent_last_week(env["BOT_DB_PATH"]))
    shown = json.loads(run(env, "ledger", "balance", str(GUILD), str(MEMBER), "--json").stdout)
    assert shown["available"] == 1000
    out = run(env, "ledger", "take", str(GUILD), str(MEMBER), "300", "--reason", "abuse")
    assert out.stdout.strip() == "took 300 Buzz; balance now 700"
    assert asyncio.run(available_at_next_use(env["BOT_DB_PATH"])) == 700
    too_much = run(env, "ledger", "take", str(GUILD), str(MEMBER), "701", "--reason", "x", ok=False)
    assert "the member has 700 available" in too_much.stderr
    out = run(env, "ledger", "grant", str(GUILD), str(MEMBER), "50", "--reason", "prize")
    assert out.stdout.strip() == "granted 50 Buzz; balance now 750"


async def with_a_role_rule(path: str) -> None:
    async with Database(path) as db:
        ledger = Ledger(db)
        await db.write(ledger.set_allowance_in, GUILD, "role", 55, 1500, "weekly", 1)
        await db.write(ledger.grant_in, GUILD, MEMBER, 40, actor_id=1, reason="prize")


async def used_the_bot_with_the_role(path: str) -> None:
    async with Database(path) as db:
        ledger = Ledger(db)
        await db.write(ledger.refresh_in, GUILD, MEMBER, (GUILD, 55))


def test_a_take_of_allowance_is_refused_while_a_refill_hanging_on_roles_is_due(
    env: dict[str, str],
) -> None:
    """With a role rule, the command line cannot tell the member's allowance: the week's
    refill due at their next request would give back whatever allowance it takes. It takes
    grants, and refuses more until the refill is made, saying where it can be done."""
    asyncio.run(spent_last_week(env["BOT_DB_PATH"]))
    asyncio.run(with_a_role_rule(env["BOT_DB_PATH"]))
    refused = run(env, "ledger", "take", str(GUILD), str(MEMBER), "100", "--reason", "x", ok=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (
        "error: cannot take 100 Buzz here: the member's allowance depends on their roles and"
        " this period's refill is not made yet, so it would give the allowance back; take at"
        " most 40 (their grants) here, or use /quota take in Discord"
    )
    out = run(env, "ledger", "take", str(GUILD), str(MEMBER), "40", "--reason", "x")
    assert out.stdout.strip() == "took 40 Buzz; balance now 300"
    asyncio.run(used_the_bot_with_the_role(env["BOT_DB_PATH"]))  # refilled to 1,500
    out = run(env, "ledger", "take", str(GUILD), str(MEMBER), "100", "--reason", "x")
    assert out.stdout.strip() == "took 100 Buzz; balance now 1,400"
