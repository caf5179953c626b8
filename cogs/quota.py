"""/quota: allowances, grants, budget and the ledger export, for admins (Manage Server or the
admin role, checked at runtime). Each change answers with the value now in force."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import Choice, Range
from discord.ext import commands

from bot.discord_adapter.access import is_admin, require_admin, role_ids
from bot.discord_adapter.embeds import allowance_source
from bot.discord_adapter.files import MemoryFile
from bot.discord_adapter.interaction import Interaction, think
from bot.discord_adapter.replies import UserFacingError, reply
from bot.store.db import MAX_INTEGER
from bot.store.ledger_records import MAX_AMOUNT, Account, InvalidAmount
from bot.store.periods import describe_moment
from bot.store.periods import period_word as per
from bot.store.reports import MAX_DAYS
from cogs.spending import answer_report

if TYPE_CHECKING:
    from bot.discord_adapter.bot import ImageBot

PERIODS = [Choice(name=p, value=p) for p in ("none", "daily", "weekly", "monthly")]
PERIOD_HELP = "How often it refills (UTC; weekly = Monday 00:00; none = once)"
Amount = Range[int, 0, MAX_AMOUNT]
Positive = Range[int, 1, MAX_AMOUNT]


class Quota(commands.Cog):
    quota = app_commands.Group(
        name="quota",
        description="Buzz allowances, grants and budget",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    def __init__(self, bot: ImageBot) -> None:
        self.bot = bot
        self.services = bot.services
        self.ledger = bot.services.ledger

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        await require_admin(interaction, self.services.guilds)
        return True

    async def _set(
        self, interaction: Interaction, scope: str, target: int, amount: int, period: str
    ) -> None:
        assert interaction.guild_id is not None
        await think(interaction)  # a write may wait for another process's lock past 3 s
        await self.ledger.set_allowance(
            interaction.guild_id,
            scope,
            target,
            amount,
            period,
            interaction.user.id,
        )

    @quota.command(
        name="default",
        description="Every member's allowance unless a role or member rule says otherwise",
    )
    @app_commands.describe(amount="Buzz per period (0-10,000,000)", period=PERIOD_HELP)
    @app_commands.choices(period=PERIODS)
    async def default(self, interaction: Interaction, amount: Amount, period: Choice[str]) -> None:
        await self._set(interaction, "default", 0, amount, period.value)
        await reply(
            interaction,
            f"Default allowance is now **{amount:,} Buzz {per(period.value)}**"
            ". Members are topped up to it at their next refill.",
        )

    @quota.command(
        name="role",
        description="The allowance for members with a role (the highest of their roles counts)",
    )
    @app_commands.describe(amount="Buzz per period (0-10,000,000)", period=PERIOD_HELP)
    @app_commands.choices(period=PERIODS)
    async def role(
        self,
        interaction: Interaction,
        role: discord.Role,
        amount: Amount,
        period: Choice[str],
    ) -> None:
        # Every member has @everyone: its rule would silently beat the default for everyone.
        if role.is_default():
            raise UserFacingError(
                "**role**: every member has @everyone; use /quota default for everyone's allowance."
            )
        if role.is_bot_managed():
            raise UserFacingError(
                f"**role**: {role.name} belongs to a bot; choose a members' role."
            )
        await self._set(interaction, "role", role.id, amount, period.value)
        await reply(
            interaction, f"{role.mention} now gives **{amount:,} Buzz {per(period.value)}**."
        )

    @quota.command(name="member", description="One member's own allowance (beats roles)")
    @app_commands.describe(amount="Buzz per period (0-10,000,000)", period=PERIOD_HELP)
    @app_commands.choices(period=PERIODS)
    async def member(
        self,
        interaction: Interaction,
        member: discord.Member,
        amount: Amount,
        period: Choice[str],
    ) -> None:
        await self._set(interaction, "member", member.id, amount, period.value)
        await reply(
            interaction,
            f"{member.mention}'s allowance is now **{amount:,} Buzz {per(period.value)}**.",
        )

    async def _change(
        self,
        interaction: Interaction,
        operation: Callable[..., Awaitable[Account]],
        member: discord.Member,
        amount: int,
        reason: str | None,
    ) -> int:
        """A grant or a take, with the member's roles so the refill due counts; the new total."""
        assert interaction.guild_id is not None
        # Acknowledged first: a write waiting on another process's lock past Discord's 3 s
        # would leave the admin unanswered, and a change made twice if they run it again.
        await think(interaction)
        account = await operation(
            interaction.guild_id,
            member.id,
            amount,
            actor_id=interaction.user.id,
            reason=reason,
            roles=role_ids(member),
        )
        return account.total

    @quota.command(
        name="grant", description="Give a member Buzz on top of their allowance (never expires)"
    )
    async def grant(
        self,
        interaction: Interaction,
        member: discord.Member,
        amount: Positive,
        reason: Range[str, 1, 300] | None = None,
    ) -> None:
        total = await self._change(interaction, self.ledger.grant, member, amount, reason)
        await reply(
            interaction,
            f"Granted {amount:,} Buzz to {member.mention}; their balance is now {total:,}.",
        )

    @quota.command(name="take", description="Take Buzz from a member (never below zero)")
    async def take(
        self,
        interaction: Interaction,
        member: discord.Member,
        amount: Positive,
        reason: Range[str, 1, 300] | None = None,
    ) -> None:
        try:
            total = await self._change(interaction, self.ledger.take, member, amount, reason)
        except InvalidAmount as exc:  # more than they have: named as any refused option
            raise UserFacingError(f"**amount**: {exc}") from None
        await reply(
            interaction,
            f"Took {amount:,} Buzz from {member.mention}; their balance is now {total:,}.",
        )

    @quota.command(
        name="budget",
        description="Cap what all members together may spend per period (0 removes the cap)",
    )
    @app_commands.describe(
        amount="Buzz per period for the whole server; 0 = no cap", period=PERIOD_HELP
    )
    @app_commands.choices(period=PERIODS)
    async def budget(self, interaction: Interaction, amount: Amount, period: Choice[str]) -> None:
        assert interaction.guild_id is not None
        await think(interaction)  # a write may wait for another process's lock past 3 s
        value = amount or None
        await self.services.guilds.update(
            interaction.guild_id,
            budget_amount=value,
            budget_period=period.value if value else None,
            actor_id=interaction.user.id,
        )
        if value is None:
            await reply(interaction, "The server has no Buzz budget cap now.")
            return
        state = await self.ledger.budget_state(interaction.guild_id, value, period.value)
        word, note = _budget_per(period.value)
        since = "so far" if period.value == "none" else "so far this period"
        await reply(
            interaction,
            f"Server budget: **{value:,} Buzz {word}**{note}; "
            f"{state.used:,} used {since}, {state.remaining:,} left.",
        )

    @quota.command(name="show", description="A member's Buzz, or the server's rules and budget")
    async def show(self, interaction: Interaction, member: discord.Member | None = None) -> None:
        assert interaction.guild_id is not None
        guild_id = interaction.guild_id
        now = self.services.clock()
        if member is not None:
            b = await self.ledger.balance(guild_id, member.id, role_ids(member))
            refill = describe_moment(b.next_refill, now) if b.next_refill else "none"
            lines = [
                f"Balance: **{b.available:,}** ({b.grant_balance:,} from grants"
                + (f", {b.pending_refill:,} refill due on next use" if b.pending_refill else "")
                + ")",
                f"Allowance: {b.allowance.amount:,} {per(b.allowance.period)} — from "
                f"{allowance_source(b.allowance)}",
                f"Next refill: {refill}",
                f"Held by running jobs: {b.held:,}",
                f"Spent {'so far' if b.allowance.period == 'none' else 'this period'}: "
                f"{b.spent_this_period:,}",
            ]
            await reply(interaction, f"{member.mention}\n" + "\n".join(lines))
            return
        rules = await self.ledger.rules(guild_id)
        lines = []
        default = next((r for r in rules if r[0] == "default"), None)
        if default:
            lines.append(f"Default: {default[2]:,} Buzz {per(default[3])}")
        else:
            d = self.ledger.default
            lines.append(f"Default: {d.amount:,} Buzz {per(d.period)} (the bot's setting)")
        for scope, target, amount, period in rules:
            if scope == "role":
                gone = " (deleted role: applies to nobody)" if _deleted(interaction, target) else ""
                lines.append(f"<@&{target}>: {amount:,} Buzz {per(period)}{gone}")
        overrides = [r for r in rules if r[0] == "member"]
        if overrides:
            lines.append(f"{len(overrides)} member override(s)")
        settings = await self.services.guilds.settings(guild_id)
        if settings.budget_amount:
            state = await self.ledger.budget_state(
                guild_id, settings.budget_amount, settings.budget_period
            )
            word, note = _budget_per(settings.budget_period or "none")
            lines.append(
                f"Budget: {settings.budget_amount:,} {word}{note}"
                f" · {state.used:,} used · {state.remaining:,} left"
            )
        else:
            lines.append("Budget: no cap")
        await reply(interaction, "\n".join(lines))

    @quota.command(
        name="clear",
        description="Remove a role's or a member's rule (also of a deleted role), or the default",
    )
    @app_commands.describe(rule="The rule to remove (the server's rules are suggested)")
    async def clear(self, interaction: Interaction, rule: Range[str, 1, 100]) -> None:
        assert interaction.guild_id is not None
        scope, target = _parse_rule(rule)
        await think(interaction)  # a write may wait for another process's lock past 3 s
        removed = await self.ledger.clear_allowance(
            interaction.guild_id, scope, target, interaction.user.id
        )
        if removed is None:
            raise UserFacingError("**rule**: there is no such rule here; /quota show lists them.")
        amount, period = removed
        await reply(
            interaction,
            f"Removed {_rule_label(scope, target)} ({amount:,} Buzz {per(period)}).",
        )

    @clear.autocomplete("rule")
    async def rule_choices(self, interaction: Interaction, current: str) -> list[Choice[str]]:
        # Cog checks do not run for suggestions: the rules are for admins' eyes only.
        if interaction.guild_id is None or not is_admin(
            interaction, await self.services.guilds.settings(interaction.guild_id)
        ):
            return []
        choices = []
        for scope, target, amount, period in await self.ledger.rules(interaction.guild_id):
            name = f"{_rule_name(interaction, scope, target)} · {amount:,} Buzz {per(period)}"
            if current.lower() in name.lower():
                value = scope if scope == "default" else f"{scope}:{target}"
                choices.append(Choice(name=name[:100], value=value))
        return choices[:25]

    @quota.command(name="export", description="The server's whole Buzz ledger as a CSV file")
    async def export(self, interaction: Interaction) -> None:
        assert interaction.guild_id is not None
        await think(interaction)  # big ledgers take time
        data = (await self.ledger.export_csv(interaction.guild_id)).encode()
        entries = data.count(b"\n") - 1  # minus the header line
        name = f"ledger-{interaction.guild_id}.csv"
        if len(data) > interaction.filesize_limit:
            data, name = await asyncio.to_thread(gzip.compress, data), name + ".gz"
        if len(data) > interaction.filesize_limit:
            raise UserFacingError(
                f"The ledger ({entries:,} entries) is too large to send here even compressed; "
                "the operator can run `python -m bot ledger export` on the server."
            )
        file = MemoryFile(data, name)
        await interaction.followup.send(f"{entries:,} entries.", file=file, ephemeral=True)

    @quota.command(name="report", description="A chart of the Buzz spent per day by model")
    @app_commands.describe(days=f"How many days back, today included (1-{MAX_DAYS}; default 30)")
    async def report(self, interaction: Interaction, days: Range[int, 1, MAX_DAYS] = 30) -> None:
        await answer_report(interaction, self.services, days)


def _budget_per(period: str) -> tuple[str, str]:
    """A budget's period after its amount, and a note: 'none' is one cap for good (not
    'once', which is what a one-off allowance means)."""
    return ("in all", " (no reset)") if period == "none" else (period, "")


def _deleted(interaction: Interaction, role_id: int) -> bool:
    """A role Discord no longer has (its rule applies to nobody); unknown when the server's
    roles are not known to the bot (then not called deleted)."""
    guild = interaction.guild
    if guild is None or guild.get_role(guild.id) is None:
        return False
    return guild.get_role(role_id) is None


def _rule_name(interaction: Interaction, scope: str, target: int) -> str:
    """How an autocomplete choice names a rule: plain text (choices show no mentions)."""
    guild = interaction.guild
    if scope == "default":
        return "default (everyone)"
    if scope == "role":
        role = guild.get_role(target) if guild else None
        if role is not None:
            return f"role @{role.name}"
        return f"role {target} (deleted)" if _deleted(interaction, target) else f"role {target}"
    member = guild.get_member(target) if guild else None
    return f"member {member.display_name}" if member else f"member {target}"


def _rule_label(scope: str, target: int) -> str:
    if scope == "default":
        return "the server's default"
    return f"the rule of <@&{target}>" if scope == "role" else f"the rule of <@{target}>"


def _parse_rule(value: str) -> tuple[str, int]:
    """'default', 'role:ID' or 'member:ID' (what the suggestions send) as (scope, target)."""
    value = value.strip()
    if value == "default":
        return "default", 0
    scope, _, target = value.partition(":")
    # ASCII digits only (int() also reads other scripts' digits), and no larger than the
    # database's integers: a typed id beyond any snowflake is just not a rule.
    digits = target.isascii() and target.isdigit()
    if scope in ("role", "member") and digits and int(target) <= MAX_INTEGER:
        return scope, int(target)
    raise UserFacingError("**rule**: pick one of the suggested rules; /quota show lists them.")


async def setup(bot: ImageBot) -> None:
    await bot.add_cog(Quota(bot))
