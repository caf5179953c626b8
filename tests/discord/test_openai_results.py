"""The OpenAI lane's results arrive whole in its answer and nothing else looks at them before
they are posted: each is decoded in full and checked against the pixel limit. An unusable one
is left out and not charged; the others are still delivered."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.store import audit
from tests.discord.harness import answer, started, text_of
from tests.discord.test_openai_lane import openai_world

pytestmark = pytest.mark.timeout(120)
FAST = {"retry_max_delay_seconds": 0.01, "max_retries": 1}
UNIT = 25  # gpt-image-1, low, one 1024x1024 image


def second_image_cut_short(sim) -> None:
    """The endpoint's second final image arrives cut in half (a proxy, a bad encoder)."""
    real = sim._image

    async def image(job, index, partial):
        data = await real(job, index, partial)
        return data[: len(data) // 2] if partial is None and index == 1 else data

    sim._image = image


async def create(w, **options):
    handle = await w.fake.slash(
        w.guild,
        w.channel,
        w.member,
        "create gpt-image-1",
        options={"prompt": "two cats", "quality": "low", **options},
    )
    job = await started(w, handle)
    return await w.wait_job(job.id, "done", "failed", timeout=40)


async def audit_events(w, action: str):
    return await audit.events(w.services.db, action=action)


def decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("fmt", ["jpeg", "png"])
async def test_an_image_cut_short_is_left_out_and_not_charged(tmp_path, fmt):
    """A cut-short JPEG passes a structure check: it was posted broken and charged, and a
    cut-short PNG failed the whole job (losing the good image OpenAI billed for)."""
    async with openai_world(tmp_path, openai=FAST) as (w, sim):
        await w.grant(1000)
        second_image_cut_short(sim)
        job = await create(w, quantity=2, format=fmt)
        assert job.status.value == "done" and job.charged == UNIT
        posted = [a for r in w.results_of(job.id) for a in r["attachments"]]
        assert len(posted) == 1 and decodes(w.fake.attachment_bytes(posted[0]))
        assert await w.available() == 1000 - UNIT


async def test_a_result_over_the_pixel_limit_is_not_posted(tmp_path):
    async with openai_world(tmp_path, openai=FAST) as (w, sim):
        await w.grant(1000)
        real = sim._image

        async def huge(job, index, partial):
            if partial is not None:
                return await real(job, index, partial)
            buffer = io.BytesIO()
            Image.new("RGB", (10000, 10000), (9, 99, 9)).save(buffer, format="PNG")
            return buffer.getvalue()

        sim._image = huge
        job = await create(w, format="png")
        assert job.status.value == "failed" and job.charged == 0
        assert w.results_of(job.id) == [] and await w.available() == 1000
        assert "over the 40,000,000-pixel limit" in (job.error or "") + str(
            [e.details for e in await audit_events(w, "upstream.call_lost")]
        )


async def test_settings_show_what_this_service_offers(tmp_path):
    """After the endpoint said gpt-image-1 is gone, an admin switching it on is told it stays
    off and how to bring it back; the buttons this lane never runs are not shown as on."""
    async with openai_world(tmp_path) as (w, sim):
        await w.grant(1000)
        sim.script("model_not_found", times=1)
        await create(w)  # the lane switches gpt-image-1 off
        handle = await w.fake.slash(
            w.guild,
            w.channel,
            w.admin,
            "settings model",
            options={"model": "gpt-image-1", "enabled": True},
        )
        shown = text_of(await answer(handle))
        assert "gpt-image-1 stays off: the image service switched it off" in shown
        assert "python -m bot openai-models --enable gpt-image-1" in shown
        models_on = next(x for x in shown.splitlines() if x.startswith("Models on"))
        assert "gpt-image-1," not in models_on + ","
        assert "Upscale not offered by this service" in shown
