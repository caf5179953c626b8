"""Upgrades with data in the database: from every earlier schema, money and jobs survive.

Each case builds a database at an older schema (only the migrations before it), fills it the way
the bot of that version left it (accounts, open and settled holds, every kind of ledger entry,
jobs in every status with sources, review items open and decided, settings, audit, bot state),
then starts the new code on it: every row is still there as it was, the backfills are right, and
the new code's reads (balances, the open holds, the jobs to resume) work on what it finds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import bot.store.db as dbmod
from bot.store.db import Database, iso, newest_schema
from bot.store.guilds import GuildDefaults, GuildStore
from bot.store.jobs import JobStatus, JobStore
from bot.store.ledger import Ledger
from bot.store.moderation import ModerationStore
from bot.store.periods import period_key
from tests.store.conftest import GUILD, Clock

# Friday 2025-01-10 09:00 UTC: the members' daily allowance was refilled today (d2025-01-10);
# jobs admitted yesterday are still held, their allowance from yesterday's period.
NOW = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)
YESTERDAY = "d2025-01-09"
TODAY = period_key("daily", NOW)
T = iso(NOW)
STEP = '{"$type": "imageGen"}'
ALL = [version for version, _, _ in dbmod._migrations()]


@contextmanager
def sql(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.row_factory = sqlite3.Row
        yield conn


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def put(conn: sqlite3.Connection, table: str, **values: Any) -> None:
    """Insert the columns the table has at this schema (a table it does not have yet: none)."""
    have = columns(conn, table)
    if not have:
        return
    kept = {k: v for k, v in values.items() if k in have}
    marks = ", ".join("?" * len(kept))
    conn.execute(f"INSERT INTO {table} ({', '.join(kept)}) VALUES ({marks})", tuple(kept.values()))


async def at_schema(path: Path, version: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database made by the bot whose newest migration is `version`."""
    older = [m for m in dbmod._migrations() if m[0] <= version]
    with monkeypatch.context() as patch:
        patch.setattr(dbmod, "_migrations", lambda: older)
        async with Database(path):
            pass


# job id -> (member, status, amount held, from allowance, workflow id, settled as captured)
JOBS: dict[str, tuple[int, str, int, int, str | None, int | None]] = {
    "j-held": (1, "held", 30, 30, None, None),
    "j-queued": (1, "queued", 20, 0, None, None),
    "j-submitted": (2, "submitted", 25, 25, "wf-submitted", None),
    "j-running": (2, "running", 40, 40, "wf-running", None),
    "j-delivering": (3, "delivering", 15, 15, "wf-delivering", None),
    "j-done": (3, "done", 50, 50, "wf-done", 45),
    "j-failed": (1, "failed", 10, 10, "wf-failed", 0),
    "j-blocked": (2, "blocked", 12, 12, "wf-blocked", 12),
    "j-canceled": (3, "canceled", 8, 0, None, 0),
    "j-expired": (1, "expired", 9, 9, "wf-expired", 0),
    "j-rejected": (2, "rejected", 11, 11, None, 0),
}
IN_FLIGHT = {"j-queued", "j-submitted", "j-running", "j-delivering"}


def fill(conn: sqlite3.Connection) -> None:
    """What the bot leaves in a database, written as SQL at whatever schema it has."""
    conn.execute("BEGIN")
    put(
        conn,
        "guild_settings",
        guild_id=GUILD,
        mod_channel_id=500,
        log_channel_id=501,
        default_model="gpt-image-1",
        confirm_above=250,
        per_member_concurrency=3,
        per_guild_concurrency=7,
        reroll_anyone=1,
        moderator_role_id=600,
        admin_role_id=601,
        strikes_to_ban=5,
        strike_window_days=14,
        budget_amount=5000,
        budget_period="weekly",
        mod_channel_warned=1,
        mod_channel_warning="access:500",
        updated_at=T,
    )
    put(conn, "guild_settings", guild_id=GUILD + 1, mod_channel_warned=0, updated_at=T)
    put(conn, "guild_models", guild_id=GUILD, model="gpt-image-1-mini", enabled=0)
    put(conn, "guild_channels", guild_id=GUILD, channel_id=77, allowed=1)
    put(conn, "guild_channels", guild_id=GUILD, channel_id=78, allowed=0)
    put(
        conn,
        "allowances",
        guild_id=GUILD,
        scope="default",
        target_id=0,
        amount=100,
        period="daily",
        updated_by=9,
        updated_at=T,
    )
    put(
        conn,
        "allowances",
        guild_id=GUILD,
        scope="member",
        target_id=3,
        amount=200,
        period="daily",
        updated_by=9,
        updated_at=T,
    )
    put(conn, "prompt_filters", guild_id=GUILD, pattern="forbidden", created_by=9, created_at=T)
    put(conn, "bot_state", key="commands", value='{"global": "abc"}', updated_at=T)
    put(conn, "safety_settings", guild_id=GUILD, max_rating="r", premoderation=1, updated_at=T)
    put(conn, "channel_ratings", guild_id=GUILD, channel_id=77, max_rating="pg13")
    put(conn, "retired_models", model="old-model", reason="retired", retired_at=T)
    put(
        conn,
        "source_blobs",
        digest="d" * 64,
        blob_id="blob-1",
        url="https://blobs/1",
        renewed_at=T,
    )

    balances = {1: [0, 0], 2: [0, 0], 3: [0, 0]}

    def entry(member: int, kind: str, amount: int, da: int, dg: int, **more: Any) -> None:
        put(
            conn,
            "ledger_entries",
            guild_id=GUILD,
            member_id=member,
            kind=kind,
            amount=amount,
            delta_allowance=da,
            delta_grant=dg,
            created_at=more.pop("created_at", T),
            **more,
        )
        balances[member][0] += da
        balances[member][1] += dg

    # Yesterday: each member's allowance refilled, a grant, an admin's take.
    for member, amount in ((1, 100), (2, 100), (3, 200)):
        entry(member, "refill", amount, amount, 0, period_key=YESTERDAY, reason="daily")
        entry(member, "grant", 50, 0, 50, actor_id=9, reason="welcome")
    entry(2, "adjust", 5, 0, -5, actor_id=9, reason="taken")

    for job_id, (member, status, amount, from_a, workflow, captured) in JOBS.items():
        put(
            conn,
            "jobs",
            id=job_id,
            guild_id=GUILD,
            channel_id=77,
            member_id=member,
            model="gpt-image-2",
            operation="editImage" if job_id == "j-queued" else "createImage",
            options='{"prompt": "a picture"}',
            step=STEP,
            sources='["source://0"]' if job_id == "j-queued" else "[]",
            estimate=amount,
            status=status,
            workflow_id=workflow,
            workflow_status="processing" if workflow else None,
            result_images='["https://img/1.png"]' if status in ("delivering", "done") else "[]",
            status_message_id=9000 + member,
            submit_attempted_at=T if workflow else None,
            submitted_at=T if workflow else None,
            deliver_by=T if status == "delivering" else None,
            usage='{"input_tokens": 10}' if status == "done" else None,
            max_rating="pg13",
            created_at=iso(datetime(2025, 1, 9, 20, 0, tzinfo=UTC)),
            updated_at=T,
        )
        put(conn, "job_events", job_id=job_id, status=status, detail="x", created_at=T)
        hold_key = YESTERDAY
        put(
            conn,
            "holds",
            guild_id=GUILD,
            member_id=member,
            job_id=job_id,
            amount=amount,
            from_allowance=from_a,
            from_grant=amount - from_a,
            refill_key=hold_key,
            captured=captured,
            released=None if captured is None else amount - captured,
            refunded=5 if job_id == "j-done" else 0,
            created_at=iso(datetime(2025, 1, 9, 20, 0, tzinfo=UTC)),
            settled_at=None if captured is None else T,
        )
        hold_id = conn.execute("SELECT id FROM holds WHERE job_id = ?", (job_id,)).fetchone()[0]
        entry(member, "hold", amount, -from_a, -(amount - from_a), hold_id=hold_id, job_id=job_id)
        if captured is not None:
            cap_a = min(captured, from_a)
            if captured:
                entry(member, "capture", captured, 0, 0, hold_id=hold_id, job_id=job_id)
            if amount - captured:
                rel_a, rel_g = from_a - cap_a, amount - from_a - (captured - cap_a)
                entry(member, "release", amount - captured, rel_a, rel_g, hold_id=hold_id)
    entry(3, "refund", 5, 0, 5, hold_id=None, job_id="j-done", actor_id=9, reason="partly lost")
    put(
        conn,
        "job_sources",
        job_id="j-queued",
        idx=0,
        role="image",
        mime="image/png",
        width=8,
        height=8,
        data=b"\x89PNG-bytes",
    )
    put(conn, "job_results", job_id="j-delivering", idx=0, mime="image/png", data=b"result")
    put(conn, "prompt_choices", job_id="j-done", choice="mine", member_id=3, created_at=T)

    before_refill = {member: bucket[0] for member, bucket in balances.items()}
    # Today's refill: each bucket topped up to the allowance (member 1's held 30 counted spent).
    for member, level in ((1, 100), (2, 100), (3, 200)):
        top_up = level - balances[member][0]
        if top_up > 0:
            entry(member, "refill", top_up, top_up, 0, period_key=TODAY, reason="daily")
    for member, level in ((1, 100), (2, 100), (3, 200)):
        held = conn.execute(
            "SELECT COALESCE(SUM(from_allowance), 0) FROM holds WHERE member_id = ?"
            " AND settled_at IS NULL",
            (member,),
        ).fetchone()[0]
        put(
            conn,
            "accounts",
            guild_id=GUILD,
            member_id=member,
            allowance_balance=balances[member][0],
            grant_balance=balances[member][1],
            last_refill_key=TODAY,
            refill_level=level,
            refill_excess=min(max(0, level - before_refill[member]), held),
        )
        for key in (YESTERDAY, TODAY):
            put(conn, "refilled_periods", guild_id=GUILD, member_id=member, period_key=key)

    # Review items: one open (the held job, posted), one decided with a strike and a ban.
    put(
        conn,
        "review_items",
        id=1,
        guild_id=GUILD,
        job_id="j-held",
        kind="held",
        reason="filter: forbidden",
        message_channel_id=500,
        message_id=7001,
        created_at=T,
        source="filter",
    )
    put(
        conn,
        "review_items",
        id=2,
        guild_id=GUILD,
        job_id="j-blocked",
        kind="blocked",
        status="refunded",
        handled_by=9,
        handled_at=T,
        note="ok",
        message_channel_id=500,
        message_id=7002,
        appeal_note="please",
        appealed_at=T,
        refund_amount=6,
        created_at=T,
        source="orchestrator",
    )
    put(
        conn,
        "review_items",
        id=3,
        guild_id=GUILD,
        job_id="j-delivering",
        kind="undelivered",
        status="dismissed",
        created_at=T,
        source="delivery",
    )
    put(conn, "strikes", guild_id=GUILD, member_id=2, actor_id=9, review_item_id=2, created_at=T)
    put(conn, "bans", guild_id=GUILD, member_id=2, actor_id=9, review_item_id=2, created_at=T)
    put(
        conn,
        "audit_events",
        guild_id=GUILD,
        actor_id=9,
        action="review.refunded",
        target="review:2",
        details='{"amount": 6}',
        created_at=T,
    )
    put(conn, "guild_charges", guild_id=GUILD, kind="premoderation", amount=1, created_at=T)
    conn.execute("COMMIT")


def dump(conn: sqlite3.Connection) -> dict[str, list[dict[str, Any]]]:
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " AND name != 'schema_version'"
        )
    ]
    return {t: [dict(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2")] for t in tables}


@pytest.mark.parametrize("version", ALL[1:], ids=[f"to-{v:03d}" for v in ALL[1:]])
async def test_an_upgrade_keeps_every_balance_hold_job_and_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    """A database one schema behind `version` (filled), upgraded to the newest schema."""
    path = tmp_path / "bot.sqlite3"
    before_version = max(v for v in ALL if v < version)
    await at_schema(path, before_version, monkeypatch)
    with sql(path) as conn:
        fill(conn)
        before = dump(conn)

    clock = Clock(NOW)
    async with Database(path) as db:
        after_versions = [r[0] for r in await db.fetchall("SELECT version FROM schema_version")]
        assert max(after_versions) == newest_schema()
        with sql(path) as conn:
            after = dump(conn)
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

        # Every row of every table is still there, each column it had unchanged.
        renamed = {("guild_settings", "mod_channel_warned")}
        for table, old_rows in before.items():
            assert table in after, f"{table} lost"
            assert len(after[table]) == len(old_rows), table
            for old, new in zip(old_rows, after[table], strict=True):
                for column, value in old.items():
                    if (table, column) not in renamed:
                        assert new[column] == value, (table, column, old)

        # Backfills.
        settings = {r["guild_id"]: r for r in after["guild_settings"]}
        assert settings[GUILD]["mod_channel_warning"] is not None
        assert settings[GUILD + 1]["mod_channel_warning"] is None
        refilled = {(r["member_id"], r["period_key"]) for r in after["refilled_periods"]}
        if "refilled_periods" not in before:
            assert refilled == {(m, k) for m in (1, 2, 3) for k in (YESTERDAY, TODAY)}
        sources = {r["job_id"]: r["source"] for r in after["review_items"]}
        if "source" not in before["review_items"][0]:
            assert sources == {
                "j-held": "filter",
                "j-blocked": "orchestrator",
                "j-delivering": "delivery",
            }

        # The new code reads it: balances as the accounts said, nothing refilled twice today.
        ledger, jobs = Ledger(db, clock=clock), JobStore(db, clock)
        for member in (1, 2, 3):
            account = next(a for a in before["accounts"] if a["member_id"] == member)
            balance = await ledger.balance(GUILD, member)
            assert balance.pending_refill == 0
            assert balance.allowance_balance == account["allowance_balance"]
            assert balance.grant_balance == account["grant_balance"]
            open_held = sum(
                h["amount"]
                for h in before["holds"]
                if h["member_id"] == member and h["settled_at"] is None
            )
            assert balance.held == open_held
        sums = await db.fetchone(
            "SELECT SUM(delta_allowance), SUM(delta_grant), COUNT(*) FROM ledger_entries"
        )
        assert tuple(sums) == (  # type: ignore[arg-type]
            sum(e["delta_allowance"] for e in before["ledger_entries"]),
            sum(e["delta_grant"] for e in before["ledger_entries"]),
            len(before["ledger_entries"]),
        )
        # Jobs in flight are found to resume, with their workflow and sources.
        active = {j.id: j for j in await jobs.active()}
        assert set(active) == IN_FLIGHT
        for job_id in IN_FLIGHT:
            assert active[job_id].status == JobStatus(JOBS[job_id][1])
            assert active[job_id].workflow_id == JOBS[job_id][4]
        assert [s.data for s in await jobs.sources("j-queued")] == [b"\x89PNG-bytes"]
        for job_id in JOBS:
            assert (await ledger.hold(job_id)) is not None
        # Review items and settings.
        moderation = ModerationStore(db, clock)
        assert [i.id for i in await moderation.open_items(GUILD)] == [1]
        decided = await moderation.item(2)
        assert decided is not None and decided.status == "refunded"
        assert decided.message_id == 7002
        guild = await GuildStore(db, GuildDefaults(), clock).settings(GUILD)
        assert (guild.confirm_above, guild.budget_amount, guild.mod_channel_id) == (250, 5000, 500)

        # A hold from yesterday's period still settles, and ends where it would have without
        # the upgrade: its allowance was counted spent by today's refill, so it expires — but
        # for the 20 that pay for j-queued instead (made after it that day, from grants because
        # it held the allowance): those grants come back. j-queued ending uncharged then gives
        # back allowance only, which the refill counted spent too.
        before_release = await ledger.balance(GUILD, 1)
        await db.write(ledger.settle_in, "j-held", 0)
        released = await ledger.balance(GUILD, 1)
        assert released.allowance_balance == before_release.allowance_balance
        assert released.grant_balance == before_release.grant_balance + 20
        await db.write(ledger.settle_in, "j-queued", 0)
        both = await ledger.balance(GUILD, 1)
        assert (both.allowance_balance, both.grant_balance) == (
            released.allowance_balance,
            released.grant_balance,
        )
