"""A job's ending told to the member privately, when its status message cannot show it (deleted,
out of the bot's reach, in a thread archived or locked meanwhile): an ephemeral follow-up while
the interaction's token lives, else a DM."""

from __future__ import annotations

import logging

import discord

from bot.discord_adapter.result_routes import ResultRoutes
from bot.discord_adapter.uploads import NETWORK_ERRORS
from bot.store.jobs import JobRecord

log = logging.getLogger(__name__)


async def tell_privately(
    bot: discord.Client, routes: ResultRoutes, job: JobRecord, embed: discord.Embed
) -> bool:
    """The ending (the status message's `embed`) sent privately; False when it could not be."""
    try:
        if routes.token_alive(job):
            try:
                await routes.followup(job).send(embed=embed, ephemeral=True)
                return True
            except discord.HTTPException as exc:
                log.info("job %s: ending not sent as a follow-up (%s)", job.id, exc.status)
            except discord.RateLimited:  # not slept out under the job's lock: a DM instead
                log.info("job %s: ending not sent as a follow-up (rate limited)", job.id)
        user = await bot.fetch_user(job.member_id)
        await user.send(embed=embed)
        return True
    except discord.HTTPException as exc:  # DMs closed (50007): nowhere left to tell them
        log.info("job %s: member not told of the ending (%s)", job.id, exc.status)
    except discord.RateLimited:
        log.info("job %s: member not told of the ending (rate limited)", job.id)
    except NETWORK_ERRORS as exc:
        log.warning("job %s: member not told of the ending (%s)", job.id, type(exc).__name__)
    return False
