"""Per-guild settings with the configured defaults; models and channels switched on and off."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bot.catalog.capabilities import can_edit
from bot.catalog.errors import CatalogError
from bot.catalog.names import MODEL_NAMES, Model, parse_model
from bot.catalog.tools import TOOL_NAMES
from bot.config import GuildDefaults
from bot.store import audit
from bot.store.db import Conn, Database, iso, utcnow
from bot.store.db import row as fetch_row
from bot.store.db import rows as fetch_rows
from bot.store.lifecycle import ModelLifecycle, retired_names_in


@dataclass(frozen=True)
class GuildSettings:
    guild_id: int
    mod_channel_id: int | None
    log_channel_id: int | None
    default_model: str
    confirm_above: int
    per_member_concurrency: int
    per_guild_concurrency: int
    reroll_anyone: bool
    moderator_role_id: int | None
    admin_role_id: int | None
    strikes_to_ban: int
    strike_window_days: int
    budget_amount: int | None
    budget_period: str | None
    # The moderation channel's problem the owner was last told of (None: none, or fixed).
    mod_channel_warning: str | None
    disabled_models: frozenset[str] = frozenset()
    allowed_channels: frozenset[int] = frozenset()
    denied_channels: frozenset[int] = frozenset()
    # Off for the whole deployment: the orchestrator said they are unavailable or retired.
    retired_models: frozenset[str] = frozenset()

    def model_enabled(self, model: str) -> bool:
        """On here (a model or a tool such as the upscaler), and not retired upstream."""
        return model not in self.disabled_models and model not in self.retired_models

    def editing_model(self, preferred: str | None = None) -> Model:
        """The model to edit with: `preferred` (the one that made the image) if it edits and
        is on here, else the guild's default if it does, else gpt-image-2."""
        for name in (preferred, self.default_model):
            try:
                model = parse_model(name or "")
            except CatalogError:
                continue
            if can_edit(model) and self.model_enabled(model.value):
                return model
        return Model.GPT_IMAGE_2

    def channel_allowed(self, channel_id: int, parent_id: int | None = None) -> bool:
        """A thread follows its parent channel's rule unless it has its own."""
        places = {channel_id} if parent_id is None else {channel_id, parent_id}
        if places & self.denied_channels:
            return False
        return not self.allowed_channels or bool(places & self.allowed_channels)


_COLUMNS = (
    "mod_channel_id",
    "log_channel_id",
    "default_model",
    "confirm_above",
    "per_member_concurrency",
    "per_guild_concurrency",
    "reroll_anyone",
    "moderator_role_id",
    "admin_role_id",
    "strikes_to_ban",
    "strike_window_days",
    "budget_amount",
    "budget_period",
    "mod_channel_warning",
)


class GuildStore:
    def __init__(
        self, db: Database, defaults: GuildDefaults, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.db = db
        self.defaults = defaults
        self.clock = clock

    def _default(self, guild_id: int) -> GuildSettings:
        d = self.defaults
        return GuildSettings(
            guild_id=guild_id,
            mod_channel_id=None,
            log_channel_id=None,
            default_model=d.default_model,
            confirm_above=d.confirm_above,
            per_member_concurrency=d.per_member_concurrency,
            per_guild_concurrency=d.per_guild_concurrency,
            reroll_anyone=False,
            moderator_role_id=None,
            admin_role_id=None,
            strikes_to_ban=d.strikes_to_ban,
            strike_window_days=d.strike_window_days,
            budget_amount=None,
            budget_period=None,
            mod_channel_warning=None,
        )

    async def settings(self, guild_id: int) -> GuildSettings:
        return await self.db.read(self.settings_in, guild_id)

    def settings_in(self, conn: Conn, guild_id: int) -> GuildSettings:
        row = fetch_row(conn, "SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
        settings = self._default(guild_id)
        if row is not None:
            # A NULL column keeps the configured default; booleans are stored as 0/1.
            values = {name: row[name] for name in _COLUMNS if row[name] is not None}
            for flag in ("reroll_anyone",):
                if flag in values:
                    values[flag] = bool(values[flag])
            settings = replace(settings, **values)
        models = fetch_rows(
            conn, "SELECT model, enabled FROM guild_models WHERE guild_id = ?", (guild_id,)
        )
        channels = fetch_rows(
            conn, "SELECT channel_id, allowed FROM guild_channels WHERE guild_id = ?", (guild_id,)
        )
        return replace(
            settings,
            disabled_models=frozenset(r["model"] for r in models if not r["enabled"]),
            allowed_channels=frozenset(r["channel_id"] for r in channels if r["allowed"]),
            denied_channels=frozenset(r["channel_id"] for r in channels if not r["allowed"]),
            retired_models=retired_names_in(conn),
        )

    # -- what admins change (async, one transaction each, the rules checked inside it) -------
    async def update(
        self, guild_id: int, *, actor_id: int | None = None, **changes: Any
    ) -> GuildSettings:
        return await self.db.write(self.update_in, guild_id, actor_id=actor_id, **changes)

    async def set_model(
        self, guild_id: int, model: str, enabled: bool, *, actor_id: int | None
    ) -> GuildSettings:
        return await self.db.write(self.set_model_in, guild_id, model, enabled, actor_id=actor_id)

    async def set_channel(
        self, guild_id: int, channel_id: int, allowed: bool, *, actor_id: int | None
    ) -> GuildSettings:
        return await self.db.write(
            self.set_channel_in, guild_id, channel_id, allowed, actor_id=actor_id
        )

    async def claim_mod_channel_warning(self, guild_id: int, problem: str) -> bool:
        """True for the one caller that should tell the owner of `problem` with the moderation
        channel (checked and set in one transaction): once per distinct problem in a row."""

        def claim(tx: Conn) -> bool:
            if self.settings_in(tx, guild_id).mod_channel_warning == problem:
                return False
            self.update_in(tx, guild_id, mod_channel_warning=problem)
            return True

        return await self.db.write(claim)

    async def mod_channel_works(self, guild_id: int) -> None:
        """The moderation channel took an item: a problem the owner was told of is fixed, so
        it is told again if it comes back."""

        def clear(tx: Conn) -> None:
            if self.settings_in(tx, guild_id).mod_channel_warning is not None:
                self.update_in(tx, guild_id, mod_channel_warning=None)

        await self.db.write(clear)

    def update_in(
        self, tx: Conn, guild_id: int, *, actor_id: int | None = None, **changes: Any
    ) -> GuildSettings:
        """Change settings; the rules that tie them together are checked against what is
        stored (a default model must be on, per-member concurrency within per-guild)."""
        unknown = set(changes) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown guild settings: {', '.join(sorted(unknown))}")
        _check_rules(self.settings_in(tx, guild_id), changes)
        if changes:
            # Only the named columns are written: the others keep following the defaults.
            names = ", ".join(changes)
            marks = ", ".join("?" * len(changes))
            updates = ", ".join(f"{c} = excluded.{c}" for c in changes)
            tx.execute(
                f"INSERT INTO guild_settings (guild_id, {names}, updated_at)"
                f" VALUES (?, {marks}, ?) ON CONFLICT (guild_id)"
                f" DO UPDATE SET {updates}, updated_at = excluded.updated_at",
                (guild_id, *changes.values(), iso(self.clock())),
            )
        if actor_id is not None:
            audit.record(
                tx,
                self.clock(),
                "settings.update",
                guild_id=guild_id,
                actor_id=actor_id,
                **changes,
            )
        return self.settings_in(tx, guild_id)

    def set_model_in(
        self, tx: Conn, guild_id: int, model: str, enabled: bool, *, actor_id: int | None
    ) -> GuildSettings:
        if model not in (*MODEL_NAMES, *TOOL_NAMES):
            raise ValueError(f"unknown model {model!r}: one of {', '.join(MODEL_NAMES)}")
        if not enabled and self.settings_in(tx, guild_id).default_model == model:
            raise SettingsRefused(
                "model",
                f"{model} is the default model (/imagine); choose another default first",
            )
        tx.execute(
            "INSERT INTO guild_models (guild_id, model, enabled) VALUES (?, ?, ?)"
            " ON CONFLICT (guild_id, model) DO UPDATE SET enabled = excluded.enabled",
            (guild_id, model, int(enabled)),
        )
        if enabled:  # a model retired upstream comes back for every guild
            ModelLifecycle(self.db, self.clock).reinstate_in(
                tx, model, guild_id=guild_id, actor_id=actor_id
            )
        audit.record(
            tx,
            self.clock(),
            "settings.model",
            guild_id=guild_id,
            actor_id=actor_id,
            target=model,
            enabled=enabled,
        )
        return self.settings_in(tx, guild_id)

    def set_channel_in(
        self,
        tx: Conn,
        guild_id: int,
        channel_id: int,
        allowed: bool | None,
        *,
        actor_id: int | None,
    ) -> GuildSettings:
        """Make image commands work, or not, in one channel.

        allowed=True on a refused channel lifts the refusal (it does not start an allow-list);
        on any other channel it puts the channel on the allow-list (with one, only listed
        channels work). allowed=False takes a channel off the allow-list if others remain on
        it, else refuses it. None forgets the channel's rule.
        """
        current = self.settings_in(tx, guild_id)
        if allowed is True and channel_id in current.denied_channels:
            allowed = None
        elif allowed is False and current.allowed_channels - {channel_id}:
            allowed = None  # off the allow-list means refused
        if allowed is None:
            tx.execute(
                "DELETE FROM guild_channels WHERE guild_id = ? AND channel_id = ?",
                (guild_id, channel_id),
            )
        else:
            tx.execute(
                "INSERT INTO guild_channels (guild_id, channel_id, allowed) VALUES (?, ?, ?)"
                " ON CONFLICT (guild_id, channel_id) DO UPDATE SET allowed = excluded.allowed",
                (guild_id, channel_id, int(allowed)),
            )
        audit.record(
            tx,
            self.clock(),
            "settings.channel",
            guild_id=guild_id,
            actor_id=actor_id,
            target=f"channel:{channel_id}",
            allowed=allowed,
        )
        return self.settings_in(tx, guild_id)


class SettingsRefused(Exception):
    """A settings change that breaks a rule; `option` names what to change."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option, self.message = option, message


def _check_rules(current: GuildSettings, changes: dict[str, object]) -> None:
    model = changes.get("default_model")
    if isinstance(model, str) and not current.model_enabled(model):
        raise SettingsRefused(
            "model", f"{model} is switched off here; turn it on with /settings model first"
        )
    member = changes.get("per_member_concurrency", current.per_member_concurrency)
    guild = changes.get("per_guild_concurrency", current.per_guild_concurrency)
    if isinstance(member, int) and isinstance(guild, int) and member > guild:
        raise SettingsRefused("per-member", "cannot be more than per-guild")
