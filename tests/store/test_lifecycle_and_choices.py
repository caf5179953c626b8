"""Retired models (off for every guild until an admin turns them on) and a member's choice after
a prompt enhancement (made once); a job's text output and the message its result answers."""

from __future__ import annotations

from dataclasses import replace

from bot.config import GuildDefaults
from bot.store import audit
from bot.store.choices import Choice, PromptChoices
from bot.store.db import Database
from bot.store.guilds import GuildStore
from bot.store.jobs import JobStore
from bot.store.lifecycle import ModelLifecycle
from tests.store.conftest import GUILD, OTHER_GUILD, Clock, new_job


async def test_a_model_is_retired_once_for_every_guild(db: Database, clock: Clock):
    lifecycle = ModelLifecycle(db, clock)
    guilds = GuildStore(db, GuildDefaults(), clock)
    first = await db.write(lifecycle.retire_in, "dall-e-2", "retired upstream", "j1")
    again = await db.write(lifecycle.retire_in, "dall-e-2", "retired upstream", "j2")
    assert (first, again) == (True, False)  # the operator is told about the first only
    for guild in (GUILD, OTHER_GUILD):
        settings = await guilds.settings(guild)
        assert not settings.model_enabled("dall-e-2") and settings.model_enabled("dall-e-3")
        assert settings.retired_models == {"dall-e-2"}
    [found] = (await lifecycle.retired()).values()
    assert (found.reason, found.job_id, found.retired_at) == ("retired upstream", "j1", clock())


async def test_an_admin_turning_it_on_brings_it_back_everywhere(db: Database, clock: Clock):
    lifecycle = ModelLifecycle(db, clock)
    guilds = GuildStore(db, GuildDefaults(), clock)
    await db.write(lifecycle.retire_in, "upscaler", "gone", "j1")
    assert not (await guilds.settings(GUILD)).model_enabled("upscaler")
    await guilds.set_model(GUILD, "upscaler", True, actor_id=42)
    assert (await guilds.settings(OTHER_GUILD)).model_enabled("upscaler")
    assert await lifecycle.retired() == {}
    [event] = await audit.events(db, action="model.reinstated")
    assert (event.guild_id, event.actor_id, event.target) == (GUILD, 42, "upscaler")
    # A guild's own switch for a tool stays its own.
    await guilds.set_model(GUILD, "upscaler", False, actor_id=42)
    assert not (await guilds.settings(GUILD)).model_enabled("upscaler")
    assert (await guilds.settings(OTHER_GUILD)).model_enabled("upscaler")


async def test_the_choice_after_an_enhancement_is_made_once(db: Database, clock: Clock):
    jobs = JobStore(db, clock)
    await db.write(jobs.insert_in, new_job("j1"))
    choices = PromptChoices(db, clock)
    assert await choices.choice("j1") is None
    assert await choices.choose("j1", Choice.MINE, 7) is None
    assert await choices.choose("j1", Choice.ENHANCED, 7) is Choice.MINE
    assert await choices.choice("j1") is Choice.MINE


async def test_a_jobs_output_and_reply_target_round_trip(db: Database, clock: Clock):
    jobs = JobStore(db, clock)
    await db.write(jobs.insert_in, replace(new_job("j1"), reply_to_message_id=555))
    job = await jobs.job("j1")
    assert job is not None and job.output is None and job.reply_to_message_id == 555
    output = {"enhancedPrompt": "a cat, lit softly", "issues": [], "recommendations": ["x"]}
    await db.write(jobs.update_in, "j1", output=output)
    job = await jobs.job("j1")
    assert job is not None and job.output == output
