"""Guild settings and the moderators' records: defaults, switches, bans, strikes, review items."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta

import pytest

from bot.catalog.names import MODEL_NAMES
from bot.config import GuildDefaults
from bot.store import audit
from bot.store.db import Conn, Database
from bot.store.guilds import GuildSettings, GuildStore
from bot.store.jobs import JobStore
from bot.store.moderation import AlreadyHandled, ModerationStore, ReviewItem
from bot.store.sanctions import LongerBanStands
from tests.store.conftest import GUILD, OTHER_GUILD, Clock, new_job

DEFAULTS = GuildDefaults(
    default_model="dall-e-3",
    confirm_above=123,
    per_member_concurrency=3,
    per_guild_concurrency=7,
    strikes_to_ban=4,
    strike_window_days=14,
)


@pytest.fixture
def guilds(db: Database, clock: Clock) -> GuildStore:
    return GuildStore(db, DEFAULTS, clock)


@pytest.fixture
def mod(db: Database, clock: Clock) -> ModerationStore:
    return ModerationStore(db, clock)


# -- guild settings ------------------------------------------------------------------------------


async def test_defaults_until_changed(db: Database, guilds: GuildStore) -> None:
    s = await guilds.settings(GUILD)
    assert (s.default_model, s.confirm_above, s.per_member_concurrency) == ("dall-e-3", 123, 3)
    assert (s.per_guild_concurrency, s.strikes_to_ban, s.strike_window_days) == (7, 4, 14)
    assert (s.budget_amount, s.budget_period, s.mod_channel_id) == (None, None, None)
    assert not s.reroll_anyone and s.mod_channel_warning is None
    assert all(s.model_enabled(m) for m in MODEL_NAMES)
    row = await db.fetchone("SELECT COUNT(*) FROM guild_settings")
    assert row is not None and row[0] == 0, "reading the settings wrote a row"
    # Another bot configuration gives other defaults to a guild that never changed anything.
    other = await GuildStore(db, GuildDefaults(confirm_above=999)).settings(GUILD)
    assert other.confirm_above == 999


async def test_update_returns_and_keeps_new_values(
    db: Database, guilds: GuildStore, clock: Clock
) -> None:
    s = await db.write(
        guilds.update_in,
        GUILD,
        actor_id=42,
        confirm_above=1000,
        mod_channel_id=555,
        reroll_anyone=True,
    )
    assert (s.confirm_above, s.mod_channel_id, s.reroll_anyone) == (1000, 555, True)
    assert s.default_model == "dall-e-3"  # untouched keys keep their values
    again = await guilds.settings(GUILD)
    assert again == s
    s = await db.write(guilds.update_in, GUILD, budget_amount=5000, budget_period="daily")
    assert (s.confirm_above, s.budget_amount, s.budget_period) == (1000, 5000, "daily")
    assert (await guilds.settings(OTHER_GUILD)).confirm_above == 123
    events = await audit.events(db, GUILD, "settings.update")
    assert len(events) == 1  # only the change with an actor is audited
    assert events[0].actor_id == 42 and events[0].details["confirm_above"] == 1000


async def test_update_refuses_unknown_keys_and_bad_values(db: Database, guilds: GuildStore) -> None:
    with pytest.raises(ValueError, match="colour"):
        await db.write(guilds.update_in, GUILD, colour="red")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        await db.write(guilds.update_in, GUILD, per_member_concurrency=0)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        await db.write(guilds.update_in, GUILD, budget_period="hourly")
    assert (await guilds.settings(GUILD)).per_member_concurrency == 3


async def test_model_switches(db: Database, guilds: GuildStore) -> None:
    s = await db.write(guilds.set_model_in, GUILD, "gpt-image-1", False, actor_id=42)
    assert not s.model_enabled("gpt-image-1")
    assert all(s.model_enabled(m) for m in MODEL_NAMES if m != "gpt-image-1")
    assert (await guilds.settings(OTHER_GUILD)).model_enabled("gpt-image-1")
    s = await db.write(guilds.set_model_in, GUILD, "gpt-image-1", True, actor_id=42)
    assert s.model_enabled("gpt-image-1")
    with pytest.raises(ValueError, match="unknown model"):
        await db.write(guilds.set_model_in, GUILD, "midjourney", False, actor_id=42)


async def test_channel_allow_list_and_deny(db: Database, guilds: GuildStore) -> None:
    s = await guilds.settings(GUILD)
    assert s.channel_allowed(10) and s.channel_allowed(11)  # no rules: everywhere

    s = await db.write(guilds.set_channel_in, GUILD, 12, False, actor_id=42)
    # A deny rule alone refuses only that channel.
    assert not s.channel_allowed(12) and s.channel_allowed(10)

    s = await db.write(guilds.set_channel_in, GUILD, 10, True, actor_id=42)
    # With an allow-list, only the listed channels.
    assert s.channel_allowed(10)
    assert not s.channel_allowed(11) and not s.channel_allowed(12)

    s = await db.write(guilds.set_channel_in, GUILD, 10, False, actor_id=42)
    # Denying the only allowed channel ends the allow-list: everywhere but the denied ones.
    assert not s.channel_allowed(10) and s.channel_allowed(11)

    def forget_both(tx: Conn) -> GuildSettings:
        guilds.set_channel_in(tx, GUILD, 10, None, actor_id=42)
        return guilds.set_channel_in(tx, GUILD, 12, None, actor_id=42)

    s = await db.write(forget_both)
    assert s.channel_allowed(10) and s.channel_allowed(12)
    assert (s.allowed_channels, s.denied_channels) == (frozenset(), frozenset())

    await db.write(guilds.set_channel_in, GUILD, 20, True, actor_id=42)
    other = await guilds.settings(OTHER_GUILD)
    assert other.channel_allowed(11)  # guild A's allow-list is not guild B's


# -- bans and strikes ----------------------------------------------------------------------------


async def test_ban_with_duration_expires(db: Database, mod: ModerationStore, clock: Clock) -> None:
    ban = await db.write(mod.ban_in, GUILD, 7, actor_id=42, reason="spam", days=2)
    assert ban.expires_at == clock.now + timedelta(days=2)
    assert (await mod.active_ban(GUILD, 7)) is not None
    assert await mod.active_ban(OTHER_GUILD, 7) is None
    assert await mod.active_ban(GUILD, 8) is None
    clock.advance(days=2, seconds=-1)
    active = await mod.active_ban(GUILD, 7)
    assert active is not None and active.reason == "spam"
    clock.advance(seconds=1)
    assert await mod.active_ban(GUILD, 7) is None
    assert not await db.write(mod.unban_in, GUILD, 7, actor_id=42)  # nothing left to lift


async def test_permanent_ban_and_unban(db: Database, mod: ModerationStore, clock: Clock) -> None:
    await db.write(mod.ban_in, GUILD, 7, actor_id=42, reason="abuse", days=None)
    clock.advance(days=3650)
    assert await mod.active_ban(GUILD, 7) is not None
    assert await db.write(mod.unban_in, GUILD, 7, actor_id=43)
    assert await mod.active_ban(GUILD, 7) is None
    assert not await db.write(mod.unban_in, GUILD, 7, actor_id=43)
    actions = [e.action for e in await audit.events(db, GUILD)]
    assert actions == ["moderation.unban", "moderation.ban"]


async def test_a_longer_ban_replaces_a_shorter_one_never_the_other_way(
    db: Database, mod: ModerationStore, clock: Clock
) -> None:
    await db.write(mod.ban_in, GUILD, 7, actor_id=42, reason="a day", days=1)
    await db.write(mod.ban_in, GUILD, 7, actor_id=43, reason="forever", days=None)
    for days in (1, 3650, None):  # nothing outlasts a ban with no end
        with pytest.raises(LongerBanStands) as refused:
            await db.write(mod.ban_in, GUILD, 7, actor_id=44, reason="shorter", days=days)
        assert refused.value.ban.reason == "forever"
    clock.advance(days=3650)
    assert (await mod.active_ban(GUILD, 7)).reason == "forever"  # type: ignore[union-attr]
    assert [e.action for e in await audit.events(db, GUILD)] == ["moderation.ban"] * 2


async def test_strikes_counted_within_the_window(
    db: Database, mod: ModerationStore, clock: Clock
) -> None:
    counts = []
    for _ in range(3):
        counts.append(
            await db.write(
                mod.add_strike_in, GUILD, 7, actor_id=42, reason="x", item_id=None, window_days=14
            )
        )
        clock.advance(days=5)
    assert counts == [1, 2, 3]
    # Now t0+15d: the first strike (t0) is out of a 14-day window, the others are in.
    assert await mod.strike_count(GUILD, 7, 14) == 2
    assert await mod.strike_count(GUILD, 7, 30) == 3
    assert await mod.strike_count(OTHER_GUILD, 7, 30) == 0
    assert await mod.strike_count(GUILD, 8, 30) == 0
    # The sync form counts the same, on any connection (here the reader's snapshot).
    assert await db.read(mod.strike_count_in, GUILD, 7, 14) == 2
    clock.advance(days=30)
    assert await mod.strike_count(GUILD, 7, 14) == 0
    assert len(await mod.strikes(GUILD, 7)) == 3  # the record stays


# -- review items --------------------------------------------------------------------------------


async def make_item(
    db: Database, mod: ModerationStore, clock: Clock, job_id: str, guild_id: int = GUILD
) -> int:
    def step(tx: Conn) -> int:
        JobStore(db, clock).insert_in(tx, new_job(job_id, guild_id))
        return mod.create_item_in(tx, guild_id, job_id, "blocked", "filter")

    return await db.write(step)


async def test_review_item_closed_once(db: Database, mod: ModerationStore, clock: Clock) -> None:
    item_id = await make_item(db, mod, clock, "j1")
    item = await mod.item(item_id)
    assert item is not None and item.open and item.job_id == "j1"
    closed = await db.write(mod.close_item_in, item_id, "refunded", 42, note="sorry")
    assert (closed.status, closed.handled_by, closed.note) == ("refunded", 42, "sorry")
    with pytest.raises(AlreadyHandled) as info:
        await db.write(mod.close_item_in, item_id, "dismissed", 43)
    assert "<@42>" in str(info.value) and "refunded" in str(info.value)
    assert info.value.item.handled_by == 42
    after = await mod.item(item_id)
    assert after is not None and (after.status, after.handled_by) == ("refunded", 42)
    with pytest.raises(KeyError):
        await db.write(mod.close_item_in, 99_999, "dismissed", 43)


async def test_two_moderators_racing_on_one_item(
    db: Database, mod: ModerationStore, clock: Clock
) -> None:
    item_id = await make_item(db, mod, clock, "j1")

    async def close(actor: int, status: str) -> ReviewItem:
        return await db.write(mod.close_item_in, item_id, status, actor)

    results = await asyncio.gather(
        close(42, "approved"),
        close(43, "rejected"),
        close(44, "dismissed"),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, AlreadyHandled)]
    assert len(winners) == 1 and len(losers) == 2
    first = winners[0].handled_by
    assert all(f"<@{first}>" in str(e) for e in losers)


async def test_review_queues_are_per_guild(
    db: Database, mod: ModerationStore, clock: Clock
) -> None:
    a1 = await make_item(db, mod, clock, "a1")
    a2 = await make_item(db, mod, clock, "a2")
    b1 = await make_item(db, mod, clock, "b1", OTHER_GUILD)

    def step(tx: Conn) -> None:
        mod.close_item_in(tx, a1, "dismissed", 42)
        mod.set_item_message_in(tx, a2, 900, 901)

    await db.write(step)
    assert [i.id for i in await mod.open_items(GUILD)] == [a2]
    assert [i.id for i in await mod.open_items(OTHER_GUILD)] == [b1]
    assert [i.id for i in await mod.items_without_message(GUILD)] == []
    assert [i.id for i in await mod.items_without_message()] == [b1]
    found = await mod.item_for_job("a2")
    assert found is not None and (found.message_channel_id, found.message_id) == (900, 901)


async def test_settings_a_guild_never_changed_follow_new_defaults(
    db: Database, clock: Clock
) -> None:
    """An operator raising the bot-wide defaults reaches guilds that only changed other things."""
    before = GuildStore(db, GuildDefaults(confirm_above=500, per_member_concurrency=2), clock)
    await db.write(before.update_in, GUILD, confirm_above=1000, actor_id=1)
    after = GuildStore(db, GuildDefaults(confirm_above=500, per_member_concurrency=4), clock)
    settings = await after.settings(GUILD)
    assert settings.confirm_above == 1000  # the guild's own choice
    assert settings.per_member_concurrency == 4  # still the default, now the new one


def test_threads_follow_their_parent_channels_rule() -> None:
    from dataclasses import replace

    from bot.config import GuildDefaults as Defaults

    base = GuildStore(None, Defaults())._default(GUILD)  # type: ignore[arg-type]
    denied = replace(base, denied_channels=frozenset({10}))
    assert not denied.channel_allowed(11, parent_id=10), "a thread of a refused channel"
    assert denied.channel_allowed(12, parent_id=20)
    only = replace(base, allowed_channels=frozenset({10}))
    assert only.channel_allowed(11, parent_id=10), "a thread of an allowed channel"
    assert not only.channel_allowed(12, parent_id=20)
    assert not only.channel_allowed(20)


async def test_allowing_a_refused_channel_lifts_the_refusal_only(
    db: Database, guilds: GuildStore
) -> None:
    await db.write(guilds.set_channel_in, GUILD, 12, False, actor_id=42)
    s = await db.write(guilds.set_channel_in, GUILD, 12, True, actor_id=42)
    assert s.channel_allowed(12) and s.channel_allowed(10), "no allow-list was started"
    s = await db.write(guilds.set_channel_in, GUILD, 10, True, actor_id=42)
    s = await db.write(guilds.set_channel_in, GUILD, 11, True, actor_id=42)
    assert s.allowed_channels == {10, 11}
    s = await db.write(guilds.set_channel_in, GUILD, 11, False, actor_id=42)
    assert s.allowed_channels == {10} and not s.channel_allowed(11) and not s.denied_channels
