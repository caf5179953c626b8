"""/create <model>: what the orchestrator receives, what is posted, what is charged."""

from __future__ import annotations

from typing import Any

import pytest

from tests.discord.harness import (
    field_value,
    finish,
    image_format,
    image_size,
    status_post,
    text_of,
    world,
)

# (subcommand, options, exact step input, files: count, (w, h), Pillow format, Buzz)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], int, tuple[int, int], str, int]] = [
    (
        "gpt-image-2",
        {"prompt": "a red fox", "size": "1536x1024", "quality": "medium", "format": "webp"},
        {
            "engine": "openai",
            "model": "gpt-image-2",
            "operation": "createImage",
            "prompt": "a red fox",
            "width": 1536,
            "height": 1024,
            "quantity": 1,
            "quality": "medium",
            "outputFormat": "webP",
        },
        1,
        (1536, 1024),
        "WEBP",
        65,  # medium, first covering tier 1024x1536 (either way round)
    ),
    (
        "gpt-image-1-5",
        {
            "prompt": "a glass bottle",
            "size": "1024x1536",
            "quality": "low",
            "quantity": 2,
            "background": "transparent",
        },
        {
            "engine": "openai",
            "model": "gpt-image-1.5",
            "operation": "createImage",
            "prompt": "a glass bottle",
            "size": "1024x1536",
            "quantity": 2,
            "quality": "low",
            "background": "transparent",
            "outputFormat": "png",  # transparent needs an alpha format: png is chosen
        },
        2,
        (1024, 1536),
        "PNG",
        50,
    ),
    (
        "gpt-image-1",
        {"prompt": "three owls", "quality": "low", "quantity": 3, "format": "jpeg"},
        {
            "engine": "openai",
            "model": "gpt-image-1",
            "operation": "createImage",
            "prompt": "three owls",
            "size": "1024x1024",
            "quantity": 3,
            "quality": "low",
            "background": "opaque",
            "outputFormat": "jpeg",
        },
        3,
        (1024, 1024),
        "JPEG",
        75,
    ),
    (
        "dall-e-3",
        {
            "prompt": "a castle in the clouds",
            "size": "1792x1024",
            "style": "natural",
            "quality": "hd",
            "format": "png",
        },
        {
            "engine": "openai",
            "model": "dall-e-3",
            "operation": "createImage",
            "prompt": "a castle in the clouds",
            "size": "1792x1024",
            "style": "natural",
            "quality": "hd",
            "background": "auto",
            "outputFormat": "png",
        },
        1,
        (1792, 1024),
        "PNG",
        300,
    ),
    (
        "dall-e-2",
        {"prompt": "a pixel cat", "size": "256x256", "quantity": 2},
        {
            "engine": "openai",
            "model": "dall-e-2",
            "operation": "createImage",
            "prompt": "a pixel cat",
            "size": "256x256",
            "quantity": 2,
            "background": "auto",
        },
        2,
        (256, 256),
        "JPEG",  # upstream's default format
        600,
    ),
]


@pytest.mark.parametrize(
    ("command", "options", "step", "count", "size", "fmt", "buzz"),
    CASES,
    ids=[c[0] for c in CASES],
)
async def test_create_sends_exactly_the_step_posts_the_images_and_charges(
    tmp_path, command, options, step, count, size, fmt, buzz
):
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(w.guild, w.channel, w.member, f"create {command}", options=options)
        job, result = await finish(w, h)

        [submitted] = w.sim.submissions
        assert submitted["steps"][0]["input"] == step
        assert submitted["externalId"] == job.id
        assert len(result["attachments"]) == count
        for attachment in result["attachments"]:
            data = w.fake.attachment_bytes(attachment)
            assert image_format(data) == fmt
            assert image_size(data) == size
        assert job.charged == buzz
        assert await w.available() == 1000 - buzz
        assert field_value(result, "Buzz charged") == f"{buzz:,}"
        assert f"<@{w.member}>" in text_of(result)


async def test_a_size_outside_openais_documented_range_runs_with_a_warning(tmp_path):
    """The orchestrator's limits are the hard ones; OpenAI's documented ones only warn."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a tiny icon", "size": "256x256", "quality": "low"},
        )
        status = await status_post(h)
        fields = {f["name"]: f["value"] for f in status["embeds"][0]["fields"]}
        assert "655,360" in fields["Note"]
        job = await w.only_job()
        assert (await w.wait_job(job.id, "done")).charged == 13
