"""The safety stores: migration 007 (the review items' rebuild keeps every row and every
strike's and ban's link), content levels per server and channel, and the guild's charges in
its budget."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import bot.store.db as dbmod
from bot.safety import levels
from bot.safety.labels import parse_labels
from bot.store.db import Conn, Database
from bot.store.guilds import SettingsRefused
from bot.store.jobs import JobStore
from bot.store.ledger import Ledger
from bot.store.moderation import ModerationStore
from bot.store.safety import SafetyStore
from tests.store.conftest import GUILD, Clock, new_job

BEFORE_007 = [m for m in dbmod._migrations() if m[0] < 7]


def old_rows(conn: Conn) -> None:
    """What a database from before 007 holds: items of each kind, a strike and a ban on them."""
    for n, kind in enumerate(("held", "blocked", "undelivered"), start=1):
        conn.execute(
            "INSERT INTO jobs (id, guild_id, channel_id, member_id, model, operation, options,"
            " step, estimate, status, created_at, updated_at) VALUES (?, ?, 5, 6, 'gpt-image-2',"
            " 'createImage', '{}', '{}', 10, 'failed', 'n', 'n')",
            (f"j{n}", GUILD),
        )
        conn.execute(
            "INSERT INTO review_items (id, guild_id, job_id, kind, reason, status, created_at,"
            " refund_amount) VALUES (?, ?, ?, ?, ?, ?, 'n', ?)",
            (n, GUILD, f"j{n}", kind, f"why {n}", "open" if n < 3 else "refunded", n * 2),
        )
    conn.execute(
        "INSERT INTO strikes (guild_id, member_id, review_item_id, created_at)"
        " VALUES (?, 6, 2, 'n')",
        (GUILD,),
    )
    conn.execute(
        "INSERT INTO bans (guild_id, member_id, created_at, review_item_id) VALUES (?, 6, 'n', 1)",
        (GUILD,),
    )


async def test_migration_007_rebuilds_review_items_and_keeps_every_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.sqlite3"
    monkeypatch.setattr(dbmod, "_migrations", lambda: BEFORE_007)
    async with Database(path) as db:
        await db.write(old_rows)
    monkeypatch.undo()
    async with Database(path) as db:
        rows = await db.fetchall(
            "SELECT id, job_id, kind, source, reason, status, refund_amount, details"
            " FROM review_items ORDER BY id"
        )
        assert [tuple(r) for r in rows] == [
            (1, "j1", "held", "filter", "why 1", "open", 2, "{}"),
            (2, "j2", "blocked", "orchestrator", "why 2", "open", 4, "{}"),
            (3, "j3", "undelivered", "delivery", "why 3", "refunded", 6, "{}"),
        ]
        assert await db.fetchall("PRAGMA foreign_key_check") == []
        strike = await db.fetchone("SELECT review_item_id FROM strikes")
        ban = await db.fetchone("SELECT review_item_id FROM bans")
        assert strike is not None and ban is not None and (strike[0], ban[0]) == (2, 1)

        def later(tx: Conn) -> None:
            # A closed item and a new open one for the same job: allowed now.
            tx.execute(
                "INSERT INTO review_items (guild_id, job_id, kind, source, created_at)"
                " VALUES (?, 'j3', 'mature', 'mature', 'n')",
                (GUILD,),
            )

        await db.write(later)
        with pytest.raises(sqlite3.IntegrityError):  # but never two open ones
            await db.write(later)
        with pytest.raises(sqlite3.IntegrityError):  # and the links are still enforced
            await db.write(lambda tx: tx.execute("DELETE FROM review_items WHERE id = 2"))
        job = await db.fetchone("SELECT max_rating FROM jobs WHERE id = 'j1'")
        assert job is not None and job[0] is None  # older jobs: nothing is checked


async def test_levels_per_server_and_channel_never_above_discord(db: Database) -> None:
    store = SafetyStore(db, Clock())
    fresh = await store.settings(GUILD)
    assert fresh.level_for(1, None, age_restricted=False) == "pg13"
    assert fresh.level_for(1, None, age_restricted=True) == "xxx"
    await store.set_level(GUILD, "r", actor_id=9)
    await store.set_level(GUILD, "pg", channel_id=2, actor_id=9)
    await store.set_level(GUILD, "x", channel_id=3, age_restricted=True, actor_id=9)
    with pytest.raises(SettingsRefused, match="not age-restricted"):
        await store.set_level(GUILD, "r", channel_id=4, age_restricted=False, actor_id=9)
    s = await store.settings(GUILD)
    assert s.level_for(1, None, age_restricted=False) == "pg13"
    assert s.level_for(1, None, age_restricted=True) == "r"
    assert s.level_for(2, None, age_restricted=True) == "pg"
    assert s.level_for(3, None, age_restricted=True) == "x"
    # The channel lost its age restriction since: capped again.
    assert s.level_for(3, None, age_restricted=False) == "pg13"
    # A thread follows its parent (its own id has no rule).
    assert s.level_for(99, 2, age_restricted=True) == "pg"
    await store.set_level(GUILD, None, channel_id=2, actor_id=9)
    assert (await store.settings(GUILD)).level_for(2, None, age_restricted=True) == "r"


async def test_premoderation_settings_and_the_guilds_charges_in_its_budget(db: Database) -> None:
    clock = Clock()
    store, ledger = SafetyStore(db, clock), Ledger(db, clock=clock)
    s = await store.set_premoderation(GUILD, True, labels=("hate",), actor_id=9)
    assert (s.premoderation, s.premoderation_labels, s.premoderation_fallback) == (
        True,
        ("hate",),
        "hold",
    )
    s = await store.set_premoderation(GUILD, False, fallback="allow", actor_id=9)
    assert (s.premoderation, s.premoderation_labels, s.premoderation_fallback) == (
        False,
        ("hate",),
        "allow",
    )
    await store.record_check(GUILD, 6, "j1", 3, outcome="clean")
    await store.record_check(GUILD + 1, 6, "j2", 5, outcome="clean")
    state = await ledger.budget_state(GUILD, 10, "daily")
    assert (state.used, state.remaining) == (3, 7)
    clock.advance(days=1)
    assert (await ledger.budget_state(GUILD, 10, "daily")).used == 0


async def test_a_job_keeps_its_channels_level(db: Database) -> None:
    jobs = JobStore(db, Clock())
    from dataclasses import replace

    await db.write(jobs.insert_in, replace(new_job("j9"), max_rating="pg13"))
    job = await jobs.job("j9")
    assert job is not None and job.max_rating == "pg13"


async def test_review_items_carry_their_source_and_details(db: Database) -> None:
    jobs, moderation = JobStore(db, Clock()), ModerationStore(db, Clock())
    await db.write(jobs.insert_in, new_job("j1"))

    def items(tx: Conn) -> None:
        moderation.create_item_in(
            tx, GUILD, "j1", "held", "flagged", source="premoderation", details={"labels": ["hate"]}
        )

    await db.write(items)
    item = await moderation.item_for_job("j1")
    assert item is not None and (item.source, item.details) == (
        "premoderation",
        {"labels": ["hate"]},
    )
    assert [i.id for i in await moderation.open_items(GUILD, source="premoderation")] == [item.id]
    assert await moderation.open_items(GUILD, source="filter") == []


def test_levels_in_plain_words() -> None:
    assert levels.parse(" PG-13 ") == "pg13" and levels.name("pg13") == "PG-13"
    assert levels.name("na") == "unrated"
    assert levels.above("r", "pg13") and not levels.above("pg13", "pg13")
    assert not levels.above(None, "pg") and not levels.above("xxx", None)
    assert levels.effective(None, None, age_restricted=False) == "pg13"
    assert levels.effective("pg", "x", age_restricted=True) == "x"
    with pytest.raises(ValueError):
        levels.parse("nc17")


def test_labels_as_admins_write_them() -> None:
    assert parse_labels("hate, violence hate") == ("hate", "violence")
    assert parse_labels("all") == () and parse_labels("  ") == ()
    with pytest.raises(ValueError, match="unknown label hat"):
        parse_labels("hat")


async def test_a_checks_charge_is_counted_once_whoever_settles_it(db: Database) -> None:
    """A check is written down before it is submitted and settled when its cost is counted;
    a second record of it (its verdict recorded late, a settling pass at start) counts
    nothing more. A cost not known yet leaves it open, to be read again."""
    store = SafetyStore(db)
    await store.open_check(GUILD, 6, "j1", "j1-premod")
    await store.record_check(GUILD, 6, "j1", None, check_id="j1-premod", outcome="failed")
    assert [c.check_id for c in await store.open_checks()] == ["j1-premod"]
    assert await store.guild_charges(GUILD) == 0
    await store.record_check(GUILD, 6, "j1", 3, check_id="j1-premod", outcome="settled later")
    await store.record_check(GUILD, 6, "j1", 3, check_id="j1-premod", outcome="clean")
    assert await store.open_checks() == []
    assert await store.guild_charges(GUILD) == 3
