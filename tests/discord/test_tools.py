"""Upscale and Remove background on a result, end to end: each a job of its own in the ledger,
priced by the orchestrator's whatif, posted as a reply to the image it came from, charged what
the simulator charged — with the source as the orchestrator's own blob URL while it is fresh,
else the bytes the bot posted."""

from __future__ import annotations

import asyncio
import time

from bot.civitai.simulator import Outcome
from bot.store.jobs import JobRecord
from tests.discord.harness import (
    World,
    answer,
    buttons,
    data_url_bytes,
    field_value,
    finish,
    image_format,
    image_size,
    open_image,
    started,
    text_of,
    world,
)
from tests.discord_admin.helpers import mod_channel
from tests.discord_admin.test_board_faults import delete_by_moderator
from tests.discord_admin.test_guilds import click_from
from tests.safety.test_mature import kept


async def first_result(w: World, **options):
    options.setdefault("prompt", "a lantern")
    h = await w.fake.slash(w.guild, w.channel, w.member, "create gpt-image-2", options=options)
    return await finish(w, h)


async def derived(w: World, job: JobRecord) -> tuple[JobRecord, dict]:
    """A tool job to its end: done, with its one result message."""
    job = await w.wait_job(job.id, "done", "failed", "canceled", "expired", timeout=30)
    assert job.status.value == "done", (job.status, job.error)
    [result] = w.results_of(job.id)
    return job, result


def upstream_charge(w: World, job: JobRecord) -> int:
    workflow = w.sim.workflow_for(job.id)
    assert workflow is not None
    return workflow.net_charge(time.monotonic())


async def test_upscale_posts_a_reply_and_charges_what_the_orchestrator_charged(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        parent, result = await first_result(w, size="512x512", quality="low")
        assert set(buttons(result)) >= {"Upscale", "Remove background"}

        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await started(w, click)
        assert (job.model, job.operation, job.parent_job_id) == (
            "upscaler",
            "imageUpscaler",
            parent.id,
        )
        job, reply = await derived(w, job)

        # A reply to the image it came from, mentioning the member.
        assert reply["message_reference"]["message_id"] == result["id"]
        assert f"<@{w.member}>" in reply["content"]
        [attachment] = reply["attachments"]
        assert image_size(w.fake.attachment_bytes(attachment)) == (1024, 1024)
        # The orchestrator's own (fresh) URL of the parent's image, not the bytes.
        step = w.sim.submissions[1]["steps"][0]
        assert step["$type"] == "imageUpscaler"
        assert step["input"] == {"image": step["input"]["image"], "numberOfRepeats": 1}
        # Like its parent, it runs under the channel's level (not age-restricted: no mature).
        assert w.sim.submissions[1]["allowMatureContent"] is False
        assert job.max_rating == "pg13"
        assert step["input"]["image"].startswith(w.sim.base_url)
        # Priced by whatif (0.26 MP → 1, ×2) and charged exactly what the workflow charged.
        assert job.whatif == 2 and job.hold_amount == 2
        assert job.charged == upstream_charge(w, job) == 2
        assert await w.available() == 1000 - 13 - 2
        assert "Buzz charged" in text_of(reply) and field_value(reply, "Buzz charged") == "2"
        # The upscale's own result can be taken further, but not re-rolled.
        assert "Re-roll" not in buttons(reply) and "Upscale" in buttons(reply)


async def test_remove_background_posts_a_transparent_png_reply(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        click = await w.fake.click(
            int(result["id"]), buttons(result)["Remove background"], w.member
        )
        job = await started(w, click)
        job, reply = await derived(w, job)
        assert reply["message_reference"]["message_id"] == result["id"]
        step = w.sim.submissions[1]["steps"][0]
        assert step["$type"] == "imageBackgroundRemoval" and step["input"]["format"] == "png"
        data = w.fake.attachment_bytes(reply["attachments"][0])
        assert image_format(data) == "PNG"
        alpha = open_image(data).convert("RGBA").getchannel("A")
        assert alpha.getextrema()[0] == 0  # some of it is transparent
        # round((4.7 + 0.6 × 0.26) × 10 / 8) = 6, as whatif said and the workflow charged.
        assert job.whatif == job.charged == upstream_charge(w, job) == 6
        assert await w.available() == 1000 - 13 - 6


async def test_on_several_images_a_modal_asks_which(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        parent, result = await first_result(w, size="512x512", quality="low", quantity=2)
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        await click.response()
        assert click.modal is not None
        refused = await w.fake.submit_modal(click, {"which": "3"})
        assert "1 to 2" in (await answer(refused))["content"]

        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        await click.response()
        submitted = await w.fake.submit_modal(click, {"which": "2"})
        job = await started(w, submitted)
        job, reply = await derived(w, job)
        assert job.options["image"] == 2
        url = w.sim.submissions[1]["steps"][0]["input"]["image"]
        source = w.sim.workflow_for(parent.id)
        assert source is not None
        assert w.sim.blobs.blob_id_of(url) == source.steps[0].blob_ids[1]
        assert reply["message_reference"]["message_id"] == result["id"]


async def test_an_expiring_blob_url_sends_the_posted_bytes_and_holds_the_estimate(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        shown = w.fake.attachment_bytes(result["attachments"][0])
        w.sim.blob_ttl = 60  # fresh URLs would expire before the job could read them
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await started(w, click)
        job, _ = await derived(w, job)
        mime, sent = data_url_bytes(w.sim.submissions[1]["steps"][0]["input"]["image"])
        assert sent == shown and mime == "image/jpeg"  # as posted, not re-encoded
        # No whatif without a usable URL: the recipe's estimate was held, the charge is upstream's.
        assert job.whatif is None and job.hold_amount == job.estimate == 2
        assert job.charged == upstream_charge(w, job) == 2


async def test_a_result_whose_blob_the_orchestrator_lost_is_upscaled_from_the_posted_bytes(
    tmp_path,
):
    """The workflow still lists the image with a fresh URL, but the blob store lost it: the
    orchestrator refuses the submit over that URL. The bytes the bot posted are sent instead
    (as when the URL would expire), not the upscale failed for good over a field name."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        parent, result = await first_result(w, size="512x512", quality="low")
        shown = w.fake.attachment_bytes(result["attachments"][0])
        w.sim.blobs.lose(parent.result_images[0]["blob_id"])
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job, _ = await derived(w, await started(w, click))
        _, sent = data_url_bytes(w.sim.submissions[-1]["steps"][0]["input"]["image"])
        assert sent == shown and len(w.sim.submissions) == 2  # the refused one made nothing
        assert job.charged == upstream_charge(w, job) == 2
        assert await w.available() == 1000 - 13 - 2


async def test_a_restart_mid_upscale_resumes_and_posts_once(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        w.sim.script(Outcome(runtime=150, step="imageUpscaler"))  # 1.5 s at this speed
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await started(w, click)
        await w.wait_job(job.id, "running")
        await w.restart_bot()
        job, _ = await derived(w, job)
        await w.fake.settle()
        assert len(w.results_of(job.id)) == 1
        assert len(w.sim.submissions) == 2  # the parent and this one: resumed, not resubmitted
        assert job.charged == upstream_charge(w, job) == 2
        assert await w.available() == 1000 - 13 - 2


async def test_cancel_an_upscale_settles_what_the_orchestrator_charged(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        w.sim.script(Outcome(runtime=500, step="imageUpscaler"))
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await started(w, click)
        await w.wait_job(job.id, "running")
        status = w.status_message(job)
        cancel = await w.fake.click(int(status["id"]), buttons(status)["Cancel"], w.member)
        await answer(cancel)
        job = await w.wait_job(job.id, "canceled")
        # A cancel while it runs: the member pays what the orchestrator kept, no more.
        assert job.charged == upstream_charge(w, job)
        assert await w.available() == 1000 - 13 - job.charged
        assert w.results_of(job.id) == [] and await w.services.ledger.hold(job.id) is not None


async def test_details_of_an_upscale_show_where_it_came_from(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        parent, result = await first_result(w, size="512x512", quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        _job, reply = await derived(w, await started(w, click))
        details = await w.fake.click(int(reply["id"]), buttons(reply)["Details"], w.member)
        made_from = field_value(await answer(details), "Made from")
        assert parent.id in made_from and "gpt-image-2 · create" in made_from
        assert result["id"] in made_from  # a link to the image it came from


async def test_an_admin_can_switch_upscale_off(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        h = await w.fake.slash(
            w.guild, w.channel, w.admin, "settings upscale", options={"enabled": False}
        )
        shown = text_of(await answer(h))
        assert "Upscale off" in shown
        assert "AI pre-moderation: off" in shown  # the whole picture, as every /settings answer
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        text = (await click.wait_for_original(lambda m: "Not started" in m["content"]))["content"]
        assert click.ephemeral and "Upscale is switched off on this server" in text
        await w.fake.settle()
        assert len(await w.jobs()) == 1 and await w.available() == 1000 - 13


async def test_an_upscale_above_the_threshold_asks_first(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        await w.set_guild(confirm_above=1)
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        asked = await click.wait_for_original(lambda m: "Go ahead?" in m["content"])
        assert "**2 Buzz**" in asked["content"] and await w.holds() == 1
        yes = await w.fake.click(int(asked["id"]), buttons(asked)["Confirm"], w.member)
        job = await started(w, yes)
        job, _ = await derived(w, job)
        assert job.charged == 2 and await w.available() == 1000 - 13 - 2


async def test_an_upscale_the_member_cannot_afford_holds_nothing(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(14)
        _parent, result = await first_result(w, size="512x512", quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        text = (await click.wait_for_original(lambda m: "Not started" in m["content"]))["content"]
        assert "this needs 2 Buzz; you have 1" in text
        await w.fake.settle()
        assert len(await w.jobs()) == 1 and await w.holds() == 1 and await w.available() == 1


async def test_another_member_may_upscale_and_pays_for_it(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        await w.grant(50, w.other)
        _parent, result = await first_result(w, size="512x512", quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.other)
        job, reply = await derived(w, await started(w, click))
        assert job.member_id == w.other and await w.available(w.other) == 48
        assert await w.available() == 1000 - 13
        assert f"<@{w.other}>" in reply["content"]


async def test_the_operators_upscaler_is_named_in_the_step(tmp_path):
    air = "urn:air:other:upscaler:civitai:147759@164821"
    async with world(tmp_path, civitai={"upscaler_model": air}) as w:
        await w.grant(1000)
        _, result = await first_result(w, size="512x512", quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        await derived(w, await started(w, click))
        assert w.sim.submissions[1]["steps"][0]["input"]["model"] == air


async def test_a_whatif_of_zero_holds_the_local_estimate(tmp_path):
    """The API's cost.total has no minimum: a whatif answering 0 is no price to hold."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        _, result = await first_result(w, size="512x512", quality="low")
        free = b'{"id": null, "status": "unassigned", "cost": {"total": 0}, "steps": []}'
        w.sim.fault(200, route="submit", body=free)  # the whatif's answer
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job, _ = await derived(w, await started(w, click))
        assert job.hold_amount is not None and job.hold_amount >= 1
        assert job.charged == upstream_charge(w, job)


async def test_a_whatif_told_to_retry_much_later_holds_the_local_estimate(tmp_path, monkeypatch):
    """The orchestrator answers the price check 429 with a Retry-After of ten minutes: the
    member's click is not left "thinking…" for that long (five times over, with the client's
    retries); the job is held at the local estimate and runs, charged what upstream charged."""
    import bot.civitai.lane as lane

    monkeypatch.setattr(lane, "WHATIF_WAIT", 0.5)  # its few seconds, at this test's scale
    async with world(tmp_path) as w:
        await w.grant(1000)
        _, result = await first_result(w, size="512x512", quality="low")
        w.sim.fault(429, route="submit", retry_after=600)  # the whatif's answer
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job, _ = await derived(w, await started(w, click))
        assert job.whatif is None and job.hold_amount == 2  # the local estimate
        assert job.charged == upstream_charge(w, job)


async def test_an_upscale_that_succeeded_without_an_image_goes_to_review_saying_so(
    tmp_path, monkeypatch
):
    """The workflow succeeded and charged, but its output has no blob (the schema requires
    one): the member is told the upscale failed and a moderator will look at the charge, and
    the moderator reads what happened, not that a failed workflow's refund never came."""
    import bot.civitai.simulator.steps.upscaler as sim_upscaler

    monkeypatch.setattr(sim_upscaler, "_output", lambda blobs, outcome: {})
    async with world(tmp_path) as w:
        await w.grant(1000)
        _, result = await first_result(w, size="512x512", quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await w.wait_job((await started(w, click)).id, "failed")
        assert job.charged == upstream_charge(w, job) == 2
        assert job.error == "Upscale failed; 2 Buzz charged; a moderator will look at the charge"
        item = await w.services.moderation.item_for_job(job.id)
        assert item is not None and item.kind == "undelivered" and item.open
        assert "succeeded without a result" in item.reason and "refund" not in item.reason


async def delete_result(w: World, result: dict) -> None:
    deleted = await w.fake.click(int(result["id"]), buttons(result)["Delete"], w.member)
    assert "Deleted." in (await answer(deleted))["content"]


async def test_an_image_deleted_before_the_upscale_is_confirmed_is_not_upscaled(tmp_path):
    """A result taken down (by its member or a moderator) while the confirmation waits must
    not come back as a new public image: Confirm is refused privately, nothing held."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        await w.set_guild(confirm_above=1)
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        asked = await click.wait_for_original(lambda m: "Go ahead?" in m["content"])
        await delete_result(w, result)
        yes = await w.fake.click(int(asked["id"]), buttons(asked)["Confirm"], w.member)
        text = (await yes.wait_for_original(lambda m: "Not started" in m["content"]))["content"]
        assert yes.ephemeral and "no longer" in text and "nothing was charged" in text
        await w.fake.settle()
        assert len(await w.jobs()) == 1 and len(w.sim.submissions) == 1
        assert await w.holds() == 1 and await w.available() == 1000 - 13


async def test_an_image_deleted_while_the_modal_asks_which_is_not_cut_out(tmp_path):
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low", quantity=2)
        label = "Remove background"
        click = await w.fake.click(int(result["id"]), buttons(result)[label], w.member)
        await click.response()
        assert click.modal is not None
        await delete_result(w, result)
        submitted = await w.fake.submit_modal(click, {"which": "2"})
        text = await submitted.wait_for_original(lambda m: "Not started" in m["content"])
        assert submitted.ephemeral and "no longer" in text["content"]
        await w.fake.settle()
        assert len(await w.jobs()) == 1 and len(w.sim.submissions) == 1
        assert await w.available() == 1000 - 26


async def test_a_tool_naming_a_result_kept_for_review_is_refused(tmp_path):
    """The engine's own guard behind Discord's: a press naming a job whose result was kept
    from the channel (under review) makes nothing of it, whatever message it came on."""
    async with world(tmp_path) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        hidden, _item = await kept(w)
        before = await w.available()
        press = await click_from(
            w, w.guild, w.channel, w.member, int(result["id"]), f"res:upscale:{hidden.id}"
        )
        text = (await press.wait_for_original(lambda m: "Not started" in m["content"]))["content"]
        assert press.ephemeral and "no longer shown" in text
        await w.fake.settle()
        assert not await w.services.jobs.children(hidden.id)
        assert await w.available() == before


async def test_an_image_deleted_while_its_upscale_runs_is_not_posted_again(tmp_path):
    """A moderator takes the image down while its upscale runs: the result must not bring it
    back as a new public image. It goes to the member privately, saying why; the charge is
    what the orchestrator charged."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        w.sim.script(Outcome(runtime=150, step="imageUpscaler"))
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await started(w, click)
        await w.wait_job(job.id, "running")
        delete_by_moderator(w, int(result["id"]))
        job = await w.wait_job(job.id, "done", "failed", timeout=30)
        await w.fake.settle()
        assert w.results_of(job.id) == []  # nothing new in the channel
        [dm] = [m for m in w.fake.dm_messages(w.member) if m.get("attachments")]
        assert "deleted" in dm["content"] and f"result of job {job.id}" in text_of(dm)
        assert job.status.value == "done" and job.delivered_message_ids == [int(dm["id"])]
        assert job.charged == upstream_charge(w, job) == 2
        assert await w.available() == 1000 - 13 - 2
        # The status message in the channel says where it went, not "posted as a reply".
        status = await w.wait_status(job, "Done")
        assert "by DM" in field_value(status, "Status"), field_value(status, "Status")
        assert "reply" not in field_value(status, "Status")


async def test_two_presses_of_upscale_at_once_start_one_job(tmp_path):
    """A double click (two presses of the same image's Upscale arriving together) is one
    upscale, charged once; the second press is told privately that it is under way."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        upscale = buttons(result)["Upscale"]
        presses = await asyncio.gather(
            w.fake.click(int(result["id"]), upscale, w.member),
            w.fake.click(int(result["id"]), upscale, w.member),
        )
        told = await asyncio.gather(
            *(
                p.wait_for_original(
                    lambda m: "Started" in m["content"] or "Not started" in m["content"]
                )
                for p in presses
            )
        )
        refusals = [m["content"] for m in told if "Not started" in m["content"]]
        assert len(refusals) == 1 and "still under way" in refusals[0], told
        job = await w.new_job({_parent.id})
        job, _reply = await derived(w, job)
        await w.fake.settle()
        assert len(await w.jobs()) == 2 and len(w.sim.submissions) == 2
        assert await w.available() == 1000 - 13 - job.charged
        # Once it is done, the image may be upscaled again (a deliberate second press).
        again = await w.fake.click(int(result["id"]), upscale, w.member)
        await derived(w, await started(w, again))


async def test_upscale_of_a_result_whose_post_is_still_being_answered_is_admitted(tmp_path):
    """The result message is up (its buttons with it) while the bot still waits for Discord's
    answer to the post: the job is still delivering and has no recorded message yet. That
    image is shown, so Upscale on it is taken, not refused as "no longer shown"."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        h = await w.fake.slash(
            w.guild,
            w.channel,
            w.member,
            "create gpt-image-2",
            options={"prompt": "a lantern", "size": "512x512", "quality": "low"},
        )
        parent = await started(w, h)
        # Only the answer to the parent's result post (its own interaction's follow-up).
        gate = w.fake.hold_requests("POST", rf"/webhooks/\d+/{h.token}$", answer_only=True)
        try:
            [result] = await w.fake.wait_for(lambda: w.results(), what="the result message")
            assert (await w.services.jobs.job(parent.id)).status.value == "delivering"
            click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
            job = await started(w, click)
            assert job.parent_job_id == parent.id
        finally:
            gate.set()
        await derived(w, job)
        await w.wait_job(parent.id, "done")


async def test_the_which_image_form_sent_after_a_restart_is_answered(tmp_path):
    """The member opens "Upscale: which image?", the bot restarts, then they send the form:
    the new process never opened it. They are told privately to open it again (not left
    with Discord's "This interaction failed"); nothing is held, and Upscale works again."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low", quantity=2)
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        await click.response()
        assert click.modal is not None
        await w.restart_bot()
        late = await w.fake.submit_modal(click, {"which": "2"})
        told = await answer(late)
        assert late.ephemeral
        assert "open it again" in told["content"] and "Nothing was charged" in told["content"]
        assert len(await w.jobs()) == 1 and await w.available() == 1000 - 26

        again = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        await again.response()
        job = await started(w, await w.fake.submit_modal(again, {"which": "2"}))
        job, _ = await derived(w, job)
        assert job.options["image"] == 2


async def test_an_upscale_posted_just_before_the_process_died_says_done_after_the_start(
    tmp_path, monkeypatch
):
    """The upscale is posted and recorded done, and the process dies while its status message
    is being edited to say so: after the start the status does not say it is still being
    posted (with the look of a job under way) for good."""
    from tests.fakes import rest as fake_rest

    armed, lost = asyncio.Event(), asyncio.Event()
    original = fake_rest.RestApi.edit_webhook_message

    async def edit_webhook_message(self, request):
        body = await request.read()
        if armed.is_set() and not lost.is_set() and b"Done" in body:
            lost.set()
            await asyncio.Event().wait()  # the process dies before Discord answers
        return await original(self, request)

    monkeypatch.setattr(fake_rest.RestApi, "edit_webhook_message", edit_webhook_message)
    async with world(tmp_path) as w:
        await w.grant(1000)
        parent, result = await first_result(w, size="512x512", quality="low")
        await w.wait_status(parent, "Done")
        armed.set()  # the upscale's Done edit is lost, not its parent's
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await started(w, click)
        job, _ = await derived(w, job)
        await w.fake.wait_for(lost.is_set, what="the Done edit on its way")
        await w.restart_bot()
        await w.wait_status(job, "Done")
        assert len(w.results_of(job.id)) == 1
        assert await w.available() == 1000 - 13 - job.charged


async def test_an_upscale_over_the_pixel_limit_is_refused_before_anything_is_held(tmp_path):
    """The bot decodes results up to media.max_pixels. An Upscale whose result would be larger
    (here: a 1024x1024 result ×2 with a 3 MP limit) could be charged and never posted: it is
    refused at the press, saying why, and nothing is held."""
    async with world(tmp_path, media={"max_pixels": 3_000_000}) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="1024x1024", quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        text = (await click.wait_for_original(lambda m: "Not started" in m["content"]))["content"]
        assert "2048x2048" in text and "3 megapixels" in text, text
        await w.fake.settle()
        assert len(await w.jobs()) == 1 and await w.holds() == 1
        assert await w.available() == 1000 - 13
        # The cut-out keeps the size: still offered.
        click = await w.fake.click(
            int(result["id"]), buttons(result)["Remove background"], w.member
        )
        job = await started(w, click)
        job, _ = await derived(w, job)


async def test_an_upscale_whose_file_may_pass_the_download_cap_is_refused_before_anything_is_held(
    tmp_path,
):
    """Results are downloaded up to civitai.max_blob_bytes. An Upscale within the pixel limit
    may still make a file larger than that (a PNG of 4 bytes a pixel): charged upstream, it
    could never be fetched and posted. It is refused at the press, saying why; nothing held."""
    async with world(tmp_path, civitai={"max_blob_bytes": 10_000_000}) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="1024x1024", quality="low")
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        text = (await click.wait_for_original(lambda m: "Not started" in m["content"]))["content"]
        assert "2048x2048" in text and "10 MB" in text, text
        await w.fake.settle()
        assert len(await w.jobs()) == 1 and await w.holds() == 1
        assert await w.available() == 1000 - 13
        assert [s for s in w.sim.submissions if s["steps"][0]["$type"] == "imageUpscaler"] == []
        # The cut-out keeps the size (up to 4 MB): still offered.
        click = await w.fake.click(
            int(result["id"]), buttons(result)["Remove background"], w.member
        )
        job = await started(w, click)
        job, _ = await derived(w, job)


async def test_a_second_tool_click_while_the_first_image_downloads_downloads_nothing(tmp_path):
    """A tool fetches the posted image before admission counts the member's jobs: clicks on
    many results would otherwise hold every image in memory at once."""
    async with world(tmp_path) as w:
        await w.grant(2000)
        await w.set_guild(per_member_concurrency=1)
        one, first = await first_result(w, size="512x512", quality="low")
        two, second = await first_result(w, size="512x512", quality="low")
        gate = w.fake.hold_requests("GET", rf"/{one.id}-1\.\w+$")  # Discord's CDN, slow
        upscale = await w.fake.click(int(first["id"]), buttons(first)["Upscale"], w.member)
        await w.fake.wait_for(
            lambda: any(f"/{one.id}-1." in c.path for c in w.fake.calls),
            what="the first image's download",
        )
        cut = await w.fake.click(int(second["id"]), buttons(second)["Remove background"], w.member)
        reply = await cut.wait_for_original(lambda m: "charged" in m["content"])
        assert "still being checked" in reply["content"], reply["content"]
        assert not [c for c in w.fake.calls if f"/{two.id}-1." in c.path]
        assert len(await w.jobs()) == 2  # the two results' jobs, no tool job

        gate.set()
        job = await started(w, upscale)
        await derived(w, job)


async def test_an_upscale_of_an_original_of_unknown_size_is_sent_the_image_it_was_sized_by(
    tmp_path,
):
    """The orchestrator left the result's size out, and the bot posted it scaled down to fit
    the upload limit. The pixel check could size only the posted copy, so that copy is what
    the Upscale is sent: the original (whose upscale here is over the 3 MP limit) would be
    charged and never posted."""
    async with world(tmp_path, media={"max_pixels": 3_000_000}) as w:
        await w.grant(1000)
        w.sim.script(Outcome(unsized=True), prompt="a lantern")
        limit, w.fake.upload_limit = w.fake.upload_limit, 8_000  # posted scaled down
        parent, result = await first_result(w, size="1024x1024", quality="low")
        w.fake.upload_limit = limit
        shown = w.fake.attachment_bytes(result["attachments"][0])
        width, height = image_size(shown)
        assert width < 1024 and parent.result_images[0]["width"] is None
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await started(w, click)
        job, reply = await derived(w, job)
        _, sent = data_url_bytes(w.sim.submissions[-1]["steps"][0]["input"]["image"])
        assert sent == shown
        upscaled = image_size(w.fake.attachment_bytes(reply["attachments"][0]))
        assert upscaled == (2 * width, 2 * height)
        assert job.charged == upstream_charge(w, job)


async def test_an_upscale_priced_without_the_orchestrator_holds_enough_for_the_original(
    tmp_path,
):
    """The whatif fails, so the local estimate is held; the step is then sent the original
    (its URL is fresh), larger than the copy posted to fit the upload limit. The estimate
    prices the original, not the copy: the member is not charged above what they confirmed."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        limit, w.fake.upload_limit = w.fake.upload_limit, 8_000  # posted scaled down
        _parent, result = await first_result(w, size="1024x1024", quality="low")
        w.fake.upload_limit = limit
        assert image_size(w.fake.attachment_bytes(result["attachments"][0]))[0] < 1024
        w.sim.fault(400, route="submit")  # the whatif is refused: no orchestrator price
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await started(w, click)
        job, _ = await derived(w, job)
        assert w.sim.submissions[-1]["steps"][0]["input"]["image"].startswith(w.sim.base_url)
        assert job.whatif is None and job.charged == upstream_charge(w, job) == 4
        assert job.hold_amount is not None and job.hold_amount >= job.charged


async def test_a_cut_out_of_an_original_of_unknown_size_is_sent_the_image_it_was_priced_by(
    tmp_path,
):
    """The orchestrator left the result's size out and the bot posted it scaled down; the
    whatif fails, so the local estimate is held, priced from the copy the bot knows the size
    of. That copy is what Remove background is sent: the larger original would cost more than
    was held and confirmed."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        w.sim.script(Outcome(unsized=True), prompt="a lantern")
        limit, w.fake.upload_limit = w.fake.upload_limit, 8_000  # posted scaled down
        parent, result = await first_result(w, size="1024x1024", quality="low")
        w.fake.upload_limit = limit
        shown = w.fake.attachment_bytes(result["attachments"][0])
        assert image_size(shown)[0] < 1024 and parent.result_images[0]["width"] is None
        w.sim.fault(400, route="submit")  # the whatif is refused: no orchestrator price
        click = await w.fake.click(
            int(result["id"]), buttons(result)["Remove background"], w.member
        )
        job = await started(w, click)
        job, _ = await derived(w, job)
        _, sent = data_url_bytes(w.sim.submissions[-1]["steps"][0]["input"]["image"])
        assert sent == shown
        assert job.whatif is None and job.charged == upstream_charge(w, job)
        assert job.hold_amount is not None and job.charged <= job.hold_amount


async def test_an_upscale_of_a_result_posted_above_the_attachment_cap_runs(tmp_path):
    """A boosted server takes uploads above the members' attachment cap, and the bot posted
    its result that large: Upscale fetches back the bot's own post, so the cap for members'
    attachments does not refuse it."""
    async with world(tmp_path, media={"max_attachment_bytes": 10_000}) as w:
        await w.grant(1000)
        parent, result = await first_result(w, size="1024x1024", quality="low")
        [attachment] = result["attachments"]
        assert attachment["size"] > 10_000
        click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
        job = await started(w, click)
        job, reply = await derived(w, job)
        assert job.parent_job_id == parent.id
        assert image_size(w.fake.attachment_bytes(reply["attachments"][0])) == (2048, 2048)


async def test_a_member_leaving_many_upscales_unconfirmed_keeps_only_the_latest_few(tmp_path):
    """Each question waiting for Confirm holds the image fetched for it. A member pressing
    Upscale again and again (never confirming) cannot fill the bot's memory: past a few,
    their oldest question expires; the newest still starts."""
    async with world(tmp_path) as w:
        await w.grant(1000)
        _parent, result = await first_result(w, size="512x512", quality="low")
        await w.set_guild(confirm_above=1)
        questions = []
        for _ in range(6):
            click = await w.fake.click(int(result["id"]), buttons(result)["Upscale"], w.member)
            questions.append(await click.wait_for_original(lambda m: "Go ahead?" in m["content"]))
        first, last = questions[0], questions[-1]
        late = await w.fake.click(int(first["id"]), buttons(first)["Confirm"], w.member)
        assert "expired" in text_of(await answer(late)) and late.ephemeral
        yes = await w.fake.click(int(last["id"]), buttons(last)["Confirm"], w.member)
        job, _ = await derived(w, await started(w, yes))
        assert job.charged == 2 and await w.available() == 1000 - 13 - 2
