"""/edit sources as the orchestrator gets them: an attachment that already fits is sent byte
for byte (uploaded once, named by URL); one over the byte budget is re-encoded under it."""

from __future__ import annotations

import io
import os

from PIL import Image

from tests.discord.harness import finish, image_size, sent_bytes, world


def photo_jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    noise = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    noise.save(buffer, "JPEG", quality=93)
    return buffer.getvalue()


async def test_an_attachment_that_fits_is_sent_exactly_as_attached(tmp_path):
    attached = photo_jpeg(400, 300)
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "make it autumn", "quality": "low"},
            attachments={"image": ("leaves.jpg", attached, "image/jpeg")},
        )
        job, result = await finish(w, h)
        [url] = w.sim.submissions[0]["steps"][0]["input"]["images"]
        assert not url.startswith("data:")  # uploaded, named by URL
        assert sent_bytes(w.sim, url) == ("image/jpeg", attached)
        assert len(w.sim.uploads) == 1
        assert job.charged == 13 and result["attachments"]


async def test_an_attachment_over_the_budget_is_re_encoded_under_it(tmp_path):
    attached = photo_jpeg(800, 600)
    budget = len(attached) // 2
    async with world(tmp_path, media={"max_source_bytes": budget}) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "edit gpt-image-2",
            options={"prompt": "make it autumn", "quality": "low"},
            attachments={"image": ("leaves.jpg", attached, "image/jpeg")},
        )
        await finish(w, h)
        [url] = w.sim.submissions[0]["steps"][0]["input"]["images"]
        mime, sent = sent_bytes(w.sim, url)
        assert mime == "image/jpeg" and len(sent) <= budget
        assert image_size(sent)[0] <= 800
