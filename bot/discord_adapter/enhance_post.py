"""A finished prompt enhancement, shown to the member privately: the enhanced prompt, the
issues and recommendations the orchestrator found, and the choice — Use enhanced, Keep mine
or Cancel. While the command's token lives it is an ephemeral follow-up; after that (a restart
past 15 minutes) it comes by DM, without buttons, for the member to run the command again."""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.catalog.tools import Tool, tool_of
from bot.discord_adapter.buttons.enhance import choice_view
from bot.discord_adapter.embeds import as_written, truncate
from bot.discord_adapter.uploads import passing_faults
from bot.engine.publisher import PostFailed
from bot.store.jobs import JobRecord, JobStatus

log = logging.getLogger(__name__)


NO_CHOICE = (
    "There is no enhanced prompt to choose from, so no image was started: run the command "
    "again (without enhance to use your prompt as written)."
)


def status_content(job: JobRecord) -> str | None:
    """The line above an enhancement's private status once it ended without a prompt to
    choose (failed, expired, blocked, canceled): the "your image starts once you choose" it
    opened with would leave the member waiting for a choice that never comes. None: as is."""
    if tool_of(job.model) is not Tool.ENHANCE or not job.final or job.status is JobStatus.DONE:
        return None
    return NO_CHOICE


def enhanced_prompt(job: JobRecord) -> str:
    return str((job.output or {}).get("enhancedPrompt") or "")


# Discord refuses a message whose embed holds more characters than this in all.
EMBED_LIMIT = 6000
# What gives way first when it would: the member's own prompt (they know it), then the advice.
SHRINK_ORDER = ("Your prompt", "Recommendations", "Issues", "description")


def choice_embed(job: JobRecord) -> discord.Embed:
    output: dict[str, Any] = job.output or {}
    target = job.options.get("target") or {}
    issues = [
        f"• {i.get('description', '')}" + (f" ({i['severity']})" if i.get("severity") else "")
        for i in output.get("issues") or []
    ]
    advice = [f"• {r}" for r in output.get("recommendations") or []]
    texts = {
        "description": as_written(enhanced_prompt(job), 4000),
        "Your prompt": as_written(job.prompt, 1024),
        "Issues": truncate("\n".join(issues), 1024),
        "Recommendations": truncate("\n".join(advice), 1024),
    }
    charged = job.charged or 0
    title = "✨ Your prompt, enhanced"
    next_step = (
        f"Choose the prompt for your {target.get('model', 'image')} request; it is priced and "
        f"started only then. This enhancement cost {charged:,} Buzz."
    )
    footer = f"prompt enhancement · job {job.id}"
    room = EMBED_LIMIT - len(title) - len(footer) - len("Next") - len(next_step)
    room -= sum(len(name) for name in texts if name != "description")
    for name in SHRINK_ORDER:
        excess = sum(len(text) for text in texts.values()) - room
        if excess <= 0:
            break
        texts[name] = (
            truncate(texts[name], max(1, len(texts[name]) - excess)) if texts[name] else ""
        )

    embed = discord.Embed(
        title=title, description=texts["description"], colour=discord.Colour.blurple()
    )
    embed.add_field(name="Your prompt", value=texts["Your prompt"] or "—", inline=False)
    if issues:
        embed.add_field(name="Issues", value=texts["Issues"], inline=False)
    if advice:
        embed.add_field(name="Recommendations", value=texts["Recommendations"], inline=False)
    embed.add_field(name="Next", value=next_step, inline=False)
    embed.set_footer(text=footer)
    return embed


async def post_choice(
    bot: discord.Client, job: JobRecord, followup: discord.Webhook | None
) -> list[int]:
    """`followup`: the job's interaction (ResultRoutes.followup) while its token lives."""
    embed = choice_embed(job)
    if followup is not None:
        view = choice_view(job.id)
        try:
            with passing_faults():  # 429, 5xx, a long rate limit: PostFailed, posted later
                sent = await followup.send(embed=embed, view=view, ephemeral=True, wait=True)
            return [sent.id]
        except discord.HTTPException as exc:
            log.warning("job %s: private follow-up refused (%s); sending a DM", job.id, exc.status)
        finally:
            view.stop()
    try:
        # The member's look-up too: Discord failing it (5xx, 429) is a passing fault.
        with passing_faults():
            user = await bot.fetch_user(job.member_id)
            message = await user.send(
                content="Your prompt enhancement finished after the command had expired. Run "
                "the command again with the prompt you prefer; nothing more was charged.",
                embed=embed,
            )
    except discord.HTTPException as exc:  # a refusal: DMs closed, the member gone
        raise PostFailed(
            f"the member cannot be told privately ({exc.status})", retry=False
        ) from None
    return [message.id]
