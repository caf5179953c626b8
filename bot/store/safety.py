"""A guild's safety settings — content levels for the server and single channels, where
moderators release results rated above a channel's level, AI pre-moderation — and what the
guild itself pays for pre-moderation (counted against its budget, never a member's Buzz)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.safety import levels
from bot.store import audit
from bot.store import premoderation_checks as checks
from bot.store.db import Conn, Database, iso, utcnow
from bot.store.db import row as fetch_row
from bot.store.db import rows as fetch_rows
from bot.store.guilds import SettingsRefused

FALLBACKS = ("hold", "allow")


@dataclass(frozen=True)
class SafetySettings:
    guild_id: int
    # The server's level (None: everything each channel's age restriction allows).
    max_rating: str | None = None
    channel_ratings: dict[int, str] = field(default_factory=dict)
    release_channel_id: int | None = None
    premoderation: bool = False
    premoderation_labels: tuple[str, ...] = ()
    premoderation_fallback: str = "hold"

    def level_for(self, channel_id: int, parent_id: int | None, age_restricted: bool) -> str:
        """The level a channel allows now: its own (a thread: its own, else its parent's),
        else the server's, capped by Discord's age restriction (a thread: its parent's)."""
        own = self.channel_ratings.get(channel_id)
        if own is None and parent_id is not None:
            own = self.channel_ratings.get(parent_id)
        return levels.effective(self.max_rating, own, age_restricted)


@dataclass(frozen=True)
class LevelChange:
    """A content level to set: the server's (channel_id None) or one channel's; level None
    forgets it. `age_restricted`: Discord's age restriction on that channel."""

    level: str | None
    channel_id: int | None = None
    age_restricted: bool = False


@dataclass(frozen=True)
class ReleaseChange:
    """The release channel to set (None: DM only)."""

    channel_id: int | None
    age_restricted: bool = False


class SafetyStore:
    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    async def settings(self, guild_id: int) -> SafetySettings:
        return await self.db.read(self.settings_in, guild_id)

    def settings_in(self, conn: Conn, guild_id: int) -> SafetySettings:
        row = fetch_row(conn, "SELECT * FROM safety_settings WHERE guild_id = ?", (guild_id,))
        channels = fetch_rows(
            conn,
            "SELECT channel_id, max_rating FROM channel_ratings WHERE guild_id = ?",
            (guild_id,),
        )
        ratings = {int(r["channel_id"]): str(r["max_rating"]) for r in channels}
        if row is None:
            return SafetySettings(guild_id, channel_ratings=ratings)
        return SafetySettings(
            guild_id,
            max_rating=row["max_rating"],
            channel_ratings=ratings,
            release_channel_id=row["release_channel_id"],
            premoderation=bool(row["premoderation"]),
            premoderation_labels=tuple(json.loads(row["premoderation_labels"])),
            premoderation_fallback=row["premoderation_fallback"],
        )

    # -- what admins change (one transaction each, the rules checked inside it) ------------
    async def set_level(
        self,
        guild_id: int,
        level: str | None,
        *,
        channel_id: int | None = None,
        age_restricted: bool = False,
        actor_id: int | None,
    ) -> SafetySettings:
        return await self.db.write(
            self.set_level_in,
            guild_id,
            level,
            channel_id=channel_id,
            age_restricted=age_restricted,
            actor_id=actor_id,
        )

    def set_level_in(
        self,
        tx: Conn,
        guild_id: int,
        level: str | None,
        *,
        channel_id: int | None = None,
        age_restricted: bool = False,
        actor_id: int | None,
    ) -> SafetySettings:
        """The server's level (channel_id None) or one channel's; None forgets it (a channel
        then follows the server; the server allows what each age restriction allows). A
        channel's level can never be above what its age restriction allows."""
        if level is not None and level not in levels.LEVELS:
            raise ValueError(f"unknown content level {level!r}")
        if channel_id is None:
            self._upsert(tx, guild_id, max_rating=level)
        elif level is None:
            tx.execute(
                "DELETE FROM channel_ratings WHERE guild_id = ? AND channel_id = ?",
                (guild_id, channel_id),
            )
        else:
            if levels.above(level, levels.cap(age_restricted)):
                raise SettingsRefused(
                    "level",
                    f"<#{channel_id}> is not age-restricted in Discord, so it can show at most "
                    f"{levels.name(levels.SAFE_CAP)}; turn on its age restriction in the "
                    "channel's settings first",
                )
            tx.execute(
                "INSERT INTO channel_ratings (guild_id, channel_id, max_rating) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id, channel_id)"
                " DO UPDATE SET max_rating = excluded.max_rating",
                (guild_id, channel_id, level),
            )
        audit.record(
            tx,
            self.clock(),
            "settings.mature",
            guild_id=guild_id,
            actor_id=actor_id,
            target=f"channel:{channel_id}" if channel_id else "server",
            level=level,
        )
        return self.settings_in(tx, guild_id)

    def set_release_channel_in(
        self,
        tx: Conn,
        guild_id: int,
        channel_id: int | None,
        *,
        age_restricted: bool,
        actor_id: int | None,
    ) -> SafetySettings:
        if channel_id is not None and not age_restricted:
            raise SettingsRefused(
                "release-channel",
                f"<#{channel_id}> is not age-restricted in Discord; results rated above a "
                "channel's level can only be released to an age-restricted channel",
            )
        self._upsert(tx, guild_id, release_channel_id=channel_id)
        audit.record(
            tx,
            self.clock(),
            "settings.release_channel",
            guild_id=guild_id,
            actor_id=actor_id,
            target=f"channel:{channel_id}" if channel_id else None,
        )
        return self.settings_in(tx, guild_id)

    async def set_mature(
        self,
        guild_id: int,
        *,
        level: LevelChange | None,
        release: ReleaseChange | None,
        actor_id: int | None,
    ) -> SafetySettings:
        """/settings mature: a level and the release channel, both or neither (one refused,
        the other is not made either: the admin reads only the refusal)."""

        def run(tx: Conn) -> SafetySettings:
            if level is not None:
                self.set_level_in(
                    tx,
                    guild_id,
                    level.level,
                    channel_id=level.channel_id,
                    age_restricted=level.age_restricted,
                    actor_id=actor_id,
                )
            if release is not None:
                self.set_release_channel_in(
                    tx,
                    guild_id,
                    release.channel_id,
                    age_restricted=release.age_restricted,
                    actor_id=actor_id,
                )
            return self.settings_in(tx, guild_id)

        return await self.db.write(run)

    async def set_premoderation(
        self,
        guild_id: int,
        enabled: bool,
        *,
        labels: Sequence[str] | None = None,
        fallback: str | None = None,
        actor_id: int | None,
    ) -> SafetySettings:
        """Switch pre-moderation; labels/fallback None keep what is stored."""
        if fallback is not None and fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)}")

        def run(tx: Conn) -> SafetySettings:
            changes: dict[str, Any] = {"premoderation": int(enabled)}
            if labels is not None:
                changes["premoderation_labels"] = json.dumps(list(labels))
            if fallback is not None:
                changes["premoderation_fallback"] = fallback
            self._upsert(tx, guild_id, **changes)
            audit.record(
                tx,
                self.clock(),
                "settings.premoderation",
                guild_id=guild_id,
                actor_id=actor_id,
                enabled=enabled,
                labels=list(labels) if labels is not None else None,
                fallback=fallback,
            )
            return self.settings_in(tx, guild_id)

        return await self.db.write(run)

    def _upsert(self, tx: Conn, guild_id: int, **changes: Any) -> None:
        names = ", ".join(changes)
        marks = ", ".join("?" * len(changes))
        updates = ", ".join(f"{c} = excluded.{c}" for c in changes)
        tx.execute(
            f"INSERT INTO safety_settings (guild_id, {names}, updated_at) VALUES (?, {marks}, ?)"
            f" ON CONFLICT (guild_id) DO UPDATE SET {updates}, updated_at = excluded.updated_at",
            (guild_id, *changes.values(), iso(self.clock())),
        )

    # -- what the guild pays ----------------------------------------------------------------
    def record_check_in(
        self,
        tx: Conn,
        guild_id: int,
        member_id: int,
        job_id: str,
        cost: int | None,
        *,
        check_id: str | None = None,
        **details: Any,
    ) -> None:
        """A pre-moderation check: its cost counts against the guild's budget (not the
        member's Buzz), and the audit keeps what it found (for moderators and operators).
        `check_id`: the check's externalId, settled here (a check already settled is not
        counted again). Cost None: not known yet, the check stays open to be read later."""
        now = self.clock()
        fresh = check_id is None or checks.settle_in(
            tx, check_id, guild_id, member_id, job_id, now, cost
        )
        if not fresh:
            details["already_counted"] = True  # settled before: its cost is in already
        if cost is not None and fresh:
            tx.execute(
                "INSERT INTO guild_charges (guild_id, kind, amount, job_id, member_id, created_at)"
                " VALUES (?, 'premoderation', ?, ?, ?, ?)",
                (guild_id, cost, job_id, member_id, iso(now)),
            )
        audit.record(
            tx,
            now,
            "premoderation.check",
            guild_id=guild_id,
            actor_id=member_id,
            target=f"job:{job_id}",
            cost=cost if cost is not None else "not known yet",
            **details,
        )

    async def record_check(
        self, guild_id: int, member_id: int, job_id: str, cost: int | None, **details: Any
    ) -> None:
        await self.db.write(self.record_check_in, guild_id, member_id, job_id, cost, **details)

    async def open_check(self, guild_id: int, member_id: int, job_id: str, check_id: str) -> None:
        """Write a check down before it is submitted: a stop cannot lose its charge."""
        await self.db.write(checks.open_in, check_id, guild_id, member_id, job_id, self.clock())

    async def open_checks(self) -> list[checks.OpenCheck]:
        """Checks not settled yet: cut off by a stop, or their charge unread."""
        return await self.db.read(checks.open_ones_in)

    async def guild_charges(self, guild_id: int) -> int:
        """Everything the guild has paid itself (all periods)."""
        found = await self.db.fetchone(
            "SELECT COALESCE(SUM(amount), 0) FROM guild_charges WHERE guild_id = ?", (guild_id,)
        )
        return int(found[0]) if found else 0
