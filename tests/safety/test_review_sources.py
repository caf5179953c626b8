"""Edit sources on a review item: a member's images from an age-restricted channel may be
mature, so they are not shown in a moderation channel without Discord's age restriction
(the channel itself could not show them); an age-restricted moderation channel shows them."""

from __future__ import annotations

from tests.discord.harness import field_value, png, text_of, world
from tests.discord_admin.helpers import blocked, item_message, mod_channel, press
from tests.safety.helpers import nsfw_channel

SOURCE = {"image": ("holiday.png", png(96, 64, (10, 200, 30)), "image/png")}


async def test_sources_from_an_age_restricted_channel_stay_out_of_a_channel_without_it(
    tmp_path,
):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        w.sim.upload_nsfw_level = "x"  # fine there: the channel is age-restricted
        job = await blocked(w, "paint it over", channel=nsfw_channel(w), attachments=SOURCE)
        item = await item_message(w, job)
        assert item["attachments"] == []
        assert field_value(item, "Sources") == (
            "1 image from an age-restricted channel, not shown here: this channel is not "
            "age-restricted."
        )
        assert "edit" in field_value(item, "Request")  # the rest of the item is all there
        assert await press(w, item, "Dismiss", w.moderator) == "Review #1: dismissed: no change."
        decided = w.fake.message(int(item["id"]))
        assert "Dismissed by" in text_of(decided)
        assert "not shown here" in field_value(decided, "Sources")  # still says why
        assert decided["attachments"] == []


async def test_an_age_restricted_moderation_channel_shows_them(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w, nsfw=True))
        await w.grant(1000)
        job = await blocked(w, "paint it over", channel=nsfw_channel(w), attachments=SOURCE)
        item = await item_message(w, job)
        [attachment] = item["attachments"]
        assert attachment["filename"] == "image1.png"
        assert "Sources" not in text_of(item)


async def test_sources_from_a_channel_without_age_restriction_are_shown(tmp_path):
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        job = await blocked(w, "paint it over", attachments=SOURCE)
        item = await item_message(w, job)
        assert len(item["attachments"]) == 1
