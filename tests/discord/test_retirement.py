"""A model the orchestrator says is retired: the job that met it ends uncharged and tells the
member which model to use instead; the model is off for every guild until an admin turns it on
again; the operator is told once."""

from __future__ import annotations

from tests.discord.harness import answer, buttons, started, text_of, world


async def create(w, model: str, member: int | None = None, **options):
    options = {"prompt": "an old lighthouse", **options}
    return await w.fake.slash(
        w.guild, w.channel, member or w.member, f"create {model}", options=options
    )


async def test_a_retired_model_is_switched_off_everywhere_and_members_are_told(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.grant(1000, w.other)
        w.sim.retired_models.add("dall-e-2")
        job = await started(w, await create(w, "dall-e-2"))
        job = await w.wait_job(job.id, "failed")
        assert job.charged == 0 and await w.available() == 1000
        assert "dall-e-2 is no longer available" in job.error
        assert "use gpt-image-2 instead" in job.error and "Nothing was charged" in job.error
        status = await w.wait_status(job, "no longer available")
        assert "use gpt-image-2 instead" in text_of(status)

        # The operator is told, once.
        owner = w.fake.owner_user.id
        dms = await w.fake.wait_for(lambda: w.fake.dm_messages(owner), what="the owner's DM")
        assert "dall-e-2" in dms[0]["content"] and "/settings model" in dms[0]["content"]

        # Off for everyone now, without asking the orchestrator.
        h = await create(w, "dall-e-2", w.other)
        text = (await answer(h))["content"]
        assert h.ephemeral and "no longer available" in text and "use gpt-image-2" in text
        assert len(w.sim.submissions) == 0 and len(await w.jobs()) == 1

        h = await w.fake.slash(w.guild, w.channel, w.admin, "settings show")
        assert "Retired by the orchestrator" in text_of(await answer(h))

        # An admin turns it on again: it is tried upstream again (and still refused there).
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.admin,
            "settings model",
            options={"model": "dall-e-2", "enabled": True},
        )
        assert "Retired by the orchestrator" not in text_of(await answer(h))
        w.sim.retired_models.clear()
        again = await started(w, await create(w, "dall-e-2"))
        again = await w.wait_job(again.id, "done")
        assert again.charged == 300
        assert len(w.fake.dm_messages(owner)) == 1


async def test_the_replacement_for_a_retired_default_is_the_next_model_on(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.retired_models.add("gpt-image-2")
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "imagine", options={"prompt": "a harbour"}
        )
        job = await w.wait_job((await started(w, h)).id, "failed")
        assert "use gpt-image-1.5 instead" in job.error
        h = await w.fake.slash(
            w.guild, w.channel, w.member, "imagine", options={"prompt": "a harbour"}
        )
        text = (await answer(h))["content"]
        assert "gpt-image-2 is no longer available" in text and "use gpt-image-1.5" in text


async def test_a_model_no_worker_supports_is_stopped_and_switched_off(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.unsupported_models.add("dall-e-3")
        job = await started(w, await create(w, "dall-e-3"))
        job = await w.wait_job(job.id, "failed")
        workflow = w.sim.workflow_for(job.id)
        assert workflow is not None and workflow.canceled_at is not None  # stopped upstream
        assert job.charged == 0 and await w.available() == 1000
        assert "dall-e-3 is no longer available" in job.error
        h = await create(w, "dall-e-3")
        assert "no longer available" in (await answer(h))["content"]


async def test_the_operators_upscaler_model_retired_tells_the_operator_to_change_it(tmp_path):
    """The upscaler AIR the operator configured (civitai.upscaler_model) is the one retired,
    not Upscale itself: turning Upscale on again (the advice for a model) would meet the same
    AIR and fail again, so the operator is told to change the setting first."""
    air = "urn:air:other:upscaler:civitai:147759@164821"
    async with world(tmp_path, civitai={"upscaler_model": air}) as w:
        await w.grant(1000)
        h = await create(w, "gpt-image-2", size="512x512", quality="low")
        parent = await w.wait_job((await started(w, h)).id, "done")
        [result] = w.results_of(parent.id)
        w.sim.retired_models.add(air)
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await w.wait_job((await started(w, click)).id, "failed")
        assert job.charged == 0
        owner = w.fake.owner_user.id
        dms = await w.fake.wait_for(lambda: w.fake.dm_messages(owner), what="the owner's DM")
        told = dms[0]["content"]
        assert air in told and "BOT_CIVITAI__UPSCALER_MODEL" in told
        assert told.index("BOT_CIVITAI__UPSCALER_MODEL") < told.index("/settings model upscaler")
