from __future__ import annotations

from tests.discord.harness import image_size, status_post, world


async def test_create_gpt_image_2_posts_the_images_and_charges_exactly(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={
                "prompt": "a lighthouse at dusk",
                "size": "1920x1072",
                "quality": "high",
                "quantity": 2,
            },
        )
        status = await status_post(h)
        embed = status["embeds"][0]
        assert "416 Buzz" in embed["fields"][1]["value"] and "584" in embed["fields"][1]["value"]
        job = await w.only_job()
        await w.wait_job(job.id, "done")
        [result] = w.results()
        assert len(result["attachments"]) == 2
        for attachment in result["attachments"]:
            assert image_size(w.fake.attachment_bytes(attachment)) == (1920, 1072)
        assert await w.available() == 1000 - 416
        [submitted] = w.sim.submissions
        assert submitted["steps"][0]["input"] == {
            "engine": "openai",
            "model": "gpt-image-2",
            "operation": "createImage",
            "prompt": "a lighthouse at dusk",
            "width": 1920,
            "height": 1072,
            "quantity": 2,
            "quality": "high",
        }
