"""Moderators' decisions on review items and members' appeals, against the real engine, the
simulator over HTTP and a real SQLite database (no Discord)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.engine.requests import Refusal, RefusalReason, Requester
from bot.review import Action, AlreadyHandled, Outcome, ReviewError
from bot.store.jobs import JobStatus
from bot.store.sanctions import MAX_BAN_DAYS
from tests.review.helpers import (
    CHANNEL,
    FILTERED,
    GUILD,
    MEMBER,
    MOD,
    MOD2,
    OTHER_GUILD,
    PRICE,
    Clock,
    Moderation,
    moderation,
)

OTHER_MEMBER = 3004


async def _set(m: Moderation, guild: int = GUILD, **changes: object) -> None:
    await m.h.db.write(m.h.guilds.update_in, guild, **changes)


def _no_filter_in(messages: list[str]) -> None:
    for message in messages:
        assert FILTERED not in message.lower(), f"the member could probe the filter: {message!r}"
        assert "filter '" not in message and "#" not in message


# -- held jobs: Approve and Reject --------------------------------------------------------------
async def test_held_job_is_announced_and_the_member_is_told_without_the_pattern(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.held()
        assert job.hold_amount == PRICE and await m.available() == 1000 - PRICE
        assert FILTERED in (item.reason or ""), "moderators see which filter matched"
        assert m.h.sim.submissions == [], "nothing is submitted while held"
        [message] = m.h.publisher.messages(job.id)
        assert "held" in message and "review" in message
        _no_filter_in([message])
        assert [i.id for i in await m.h.moderation.open_items(GUILD)] == [item.id]


async def test_approve_runs_the_held_job_and_charges_it_as_usual(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.held()
        outcome = await m.review.act(GUILD, item.id, Action.APPROVE, MOD)
        assert isinstance(outcome, Outcome)
        assert outcome.item.status == "approved" and outcome.item.handled_by == MOD
        assert outcome.job.status is JobStatus.QUEUED
        await m.h.settle_all()
        done = await m.h.job(job.id)
        assert done.status is JobStatus.DONE and done.charged == PRICE
        assert await m.available() == 1000 - PRICE
        assert len(m.h.sim.submissions) == 1 and len(m.h.publisher.posts) == 1
        messages = m.h.publisher.messages(job.id)
        assert outcome.verdict in messages and "approved" in outcome.verdict
        _no_filter_in(messages)
        [event] = await m.audit("review.approve")
        assert event.target == f"review:{item.id}" and event.actor_id == MOD
        assert event.details["job"] == job.id


async def test_reject_releases_the_whole_hold_and_tells_the_member(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.held()
        outcome = await m.review.act(GUILD, item.id, Action.REJECT, MOD)
        assert outcome.item.status == "rejected"
        rejected = await m.h.job(job.id)
        assert rejected.status is JobStatus.REJECTED and rejected.charged == 0
        hold = await m.h.ledger.hold(job.id)
        assert hold.settled_at is not None
        assert (hold.captured, hold.released) == (0, PRICE)
        assert await m.available() == 1000
        await m.h.settle_all()
        assert m.h.sim.submissions == [], "a rejected job never reaches the orchestrator"
        messages = m.h.publisher.messages(job.id)
        assert messages[-1] == outcome.verdict and "will not run" in outcome.verdict
        _no_filter_in(messages)
        [event] = await m.audit("review.reject")
        assert event.target == f"review:{item.id}"


async def test_a_held_job_the_member_withdrew_closes_its_item(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.held()
        await m.h.engine.cancel(job.id, Requester(GUILD, CHANNEL, MEMBER))
        assert await m.available() == 1000
        withdrawn = await m.h.moderation.item(item.id)
        assert withdrawn.status == "withdrawn" and withdrawn.handled_by == MEMBER
        assert await m.h.moderation.open_items(GUILD) == []
        with pytest.raises(AlreadyHandled, match=f"<@{MEMBER}>"):
            await m.review.act(GUILD, item.id, Action.APPROVE, MOD)
        assert (await m.h.job(job.id)).status is JobStatus.CANCELED
        assert await m.available() == 1000, "the hold was released once, by the cancel"


# -- blocked jobs: Refund and Dismiss -----------------------------------------------------------
async def test_blocked_job_is_announced_and_the_member_is_told(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.blocked("block")
        assert job.status is JobStatus.BLOCKED
        [message] = m.h.publisher.messages(job.id)
        assert "blocked" in message and "review" in message
        assert [i.id for i, _ in m.h.reviews.items] == [item.id], "one item per blocked job"


async def test_refund_gives_back_what_a_blocked_job_cost(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.blocked("block_charged")
        assert job.charged == PRICE and await m.available() == 1000 - PRICE
        outcome = await m.review.act(GUILD, item.id, Action.REFUND, MOD)
        assert outcome.item.status == "refunded" and outcome.item.handled_by == MOD
        assert await m.available() == 1000
        [refund] = await m.refunds()
        assert (refund.kind, refund.amount, refund.delta) == ("refund", PRICE, PRICE)
        assert refund.job_id == job.id and refund.actor_id == MOD
        assert (await m.h.ledger.hold(job.id)).refunded == PRICE
        [event] = await m.audit("review.refund")
        assert event.target == f"review:{item.id}" and event.details["refunded"] == PRICE
        assert m.h.publisher.messages(job.id)[-1] == outcome.verdict
        assert f"{PRICE}" in outcome.verdict and "refunded" in outcome.verdict


async def test_refund_on_a_blob_blocked_job_that_was_charged(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(500)
        item, job = await m.blocked("blob_blocked")
        assert job.charged == PRICE
        await m.review.act(GUILD, item.id, Action.REFUND, MOD)
        assert await m.available() == 500


async def test_refund_of_a_block_that_cost_nothing_is_refused_and_changes_nothing(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.blocked("block")
        assert job.charged == 0 and await m.available() == 1000
        messages_before = m.h.publisher.messages(job.id)
        with pytest.raises(ReviewError, match="nothing to refund"):
            await m.review.act(GUILD, item.id, Action.REFUND, MOD)
        assert (await m.h.moderation.item(item.id)).open
        assert await m.available() == 1000
        assert await m.refunds() == []
        assert await m.audit("review.refund") == []
        assert m.h.publisher.messages(job.id) == messages_before
        # Dismiss still closes it.
        await m.review.act(GUILD, item.id, Action.DISMISS, MOD)


async def test_dismiss_closes_the_item_and_the_block_stands(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.blocked("block_charged")
        outcome = await m.review.act(GUILD, item.id, Action.DISMISS, MOD2)
        assert outcome.item.status == "dismissed" and outcome.item.handled_by == MOD2
        assert (await m.h.job(job.id)).status is JobStatus.BLOCKED
        assert await m.available() == 1000 - PRICE and await m.refunds() == []
        assert m.h.publisher.messages(job.id)[-1] == outcome.verdict
        assert "block stands" in outcome.verdict
        [event] = await m.audit("review.dismiss")
        assert event.actor_id == MOD2 and event.target == f"review:{item.id}"
        assert await m.h.moderation.open_items(GUILD) == []


@pytest.mark.parametrize(
    ("kind", "action"),
    [
        ("blocked", Action.APPROVE),
        ("blocked", Action.REJECT),
        ("held", Action.REFUND),
        ("held", Action.DISMISS),
    ],
)
async def test_a_decision_that_does_not_fit_the_item_is_refused(tmp_path, kind, action):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await (m.blocked("block_charged") if kind == "blocked" else m.held())
        balance = await m.available()
        with pytest.raises(ReviewError) as refused:
            await m.review.act(GUILD, item.id, action, MOD)
        assert "held" in str(refused.value)
        assert (await m.h.moderation.item(item.id)).open
        assert (await m.h.job(job.id)).status is job.status
        assert await m.available() == balance
        assert await m.review.history(item.id) == []


async def test_unknown_item_is_refused(tmp_path):
    async with moderation(tmp_path) as m:
        with pytest.raises(ReviewError, match="no such review item"):
            await m.review.act(GUILD, 999, Action.DISMISS, MOD)


# -- settled once -------------------------------------------------------------------------------
async def test_a_second_moderator_hears_who_already_handled_it(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, _ = await m.held()
        await m.review.act(GUILD, item.id, Action.APPROVE, MOD)
        for action in (Action.APPROVE, Action.REJECT):
            with pytest.raises(AlreadyHandled, match=f"(?i)already handled by <@{MOD}>") as exc:
                await m.review.act(GUILD, item.id, action, MOD2)
            assert exc.value.item.handled_by == MOD and exc.value.item.status == "approved"
        await m.h.settle_all()
        assert len(m.h.sim.submissions) == 1
        assert len(await m.audit("review.approve")) == 1
        assert await m.available() == 1000 - PRICE


async def test_a_second_refund_after_the_first_hears_who_refunded(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, _ = await m.blocked("block_charged")
        await m.review.act(GUILD, item.id, Action.REFUND, MOD)
        for action in (Action.REFUND, Action.DISMISS):
            with pytest.raises(AlreadyHandled, match=f"(?i)already handled by <@{MOD}>"):
                await m.review.act(GUILD, item.id, action, MOD2)
        assert len(await m.refunds()) == 1 and await m.available() == 1000


async def test_two_moderators_pressing_refund_at_once_refund_once(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.blocked("block_charged")
        results = await asyncio.gather(
            m.review.act(GUILD, item.id, Action.REFUND, MOD),
            m.review.act(GUILD, item.id, Action.REFUND, MOD2),
            return_exceptions=True,
        )
        done = [r for r in results if isinstance(r, Outcome)]
        lost = [r for r in results if isinstance(r, AlreadyHandled)]
        assert len(done) == 1 and len(lost) == 1, results
        winner = done[0].item.handled_by
        assert f"<@{winner}>" in str(lost[0])
        [refund] = await m.refunds()
        assert refund.amount == PRICE and refund.actor_id == winner
        assert await m.available() == 1000
        assert (await m.h.ledger.hold(job.id)).refunded == PRICE
        assert len(await m.audit("review.refund")) == 1


async def test_two_moderators_pressing_approve_and_reject_at_once_settle_it_once(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.held()
        results = await asyncio.gather(
            m.review.act(GUILD, item.id, Action.APPROVE, MOD),
            m.review.act(GUILD, item.id, Action.REJECT, MOD2),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["AlreadyHandled", "Outcome"]
        await m.h.settle_all()
        final = await m.h.job(job.id)
        [won] = [r for r in results if isinstance(r, Outcome)]
        if won.item.status == "approved":
            assert final.status is JobStatus.DONE and await m.available() == 1000 - PRICE
        else:
            assert final.status is JobStatus.REJECTED and await m.available() == 1000
        hold = await m.h.ledger.hold(job.id)
        assert hold.captured + hold.released == PRICE


# -- strikes and bans ---------------------------------------------------------------------------
async def test_strikes_up_to_the_threshold_ban_the_member_automatically(tmp_path):
    async with moderation(tmp_path) as m:
        await _set(m, strikes_to_ban=3, strike_window_days=30)
        await m.grant(1000)
        items = [(await m.held(f"a {FILTERED} number {i}"))[0] for i in range(3)]
        outcomes = [await m.review.act(GUILD, item.id, Action.STRIKE, MOD) for item in items]
        assert [o.strikes for o in outcomes] == [1, 2, 3]
        assert [o.banned for o in outcomes] == [False, False, True]
        assert "automatically banned" in outcomes[-1].summary
        assert all(o.verdict is None for o in outcomes), "a strike alone tells the member nothing"
        assert all(o.item.open for o in outcomes), "a strike does not close the item"
        ban = await m.h.moderation.active_ban(GUILD, MEMBER)
        assert ban is not None and ban.expires_at is None and "automatic" in (ban.reason or "")
        with pytest.raises(Refusal) as refused:
            await m.h.engine.submit(m.request("a lighthouse"))
        assert refused.value.reason is RefusalReason.BANNED
        strikes = await m.audit("review.strike")
        assert [e.target for e in strikes] == [f"review:{i.id}" for i in items]
        assert [e.details["strikes"] for e in strikes] == [1, 2, 3]
        assert len(await m.h.moderation.strikes(GUILD, MEMBER)) == 3


async def test_strikes_outside_the_window_do_not_add_up(tmp_path):
    clock = Clock()
    async with moderation(tmp_path, clock) as m:
        await _set(m, strikes_to_ban=2, strike_window_days=7)
        await m.grant(1000)
        first, _ = await m.held(f"a {FILTERED} one")
        second, _ = await m.held(f"a {FILTERED} two")
        assert (await m.review.act(GUILD, first.id, Action.STRIKE, MOD)).strikes == 1
        clock.advance(days=8)
        outcome = await m.review.act(GUILD, second.id, Action.STRIKE, MOD)
        assert outcome.strikes == 1 and not outcome.banned
        assert await m.h.moderation.active_ban(GUILD, MEMBER) is None


async def test_strikes_to_ban_zero_never_bans(tmp_path):
    async with moderation(tmp_path) as m:
        await _set(m, strikes_to_ban=0)
        await m.grant(1000)
        for i in range(3):
            item, _ = await m.held(f"a {FILTERED} {i}")
            assert not (await m.review.act(GUILD, item.id, Action.STRIKE, MOD)).banned
        assert await m.h.moderation.active_ban(GUILD, MEMBER) is None


async def test_one_strike_per_item_even_after_it_is_closed(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, _ = await m.blocked("block")
        await m.review.act(GUILD, item.id, Action.STRIKE, MOD, reason="spam")
        with pytest.raises(ReviewError, match=f"already given for this item by <@{MOD}>"):
            await m.review.act(GUILD, item.id, Action.STRIKE, MOD2)
        await m.review.act(GUILD, item.id, Action.DISMISS, MOD2)
        with pytest.raises(ReviewError, match="strike was already given"):
            await m.review.act(GUILD, item.id, Action.STRIKE, MOD2)
        [strike] = await m.h.moderation.strikes(GUILD, MEMBER)
        assert strike["actor_id"] == MOD and strike["reason"] == "spam"
        assert len(await m.audit("review.strike")) == 1


async def test_a_strike_on_a_closed_item_is_still_allowed(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, _ = await m.held()
        await m.review.act(GUILD, item.id, Action.REJECT, MOD)
        outcome = await m.review.act(GUILD, item.id, Action.STRIKE, MOD2)
        assert outcome.strikes == 1 and outcome.item.status == "rejected"


async def test_a_ban_for_two_days_ends_by_itself(tmp_path):
    clock = Clock()
    async with moderation(tmp_path, clock) as m:
        await m.grant(1000)
        item, _ = await m.blocked("block")
        outcome = await m.review.act(GUILD, item.id, Action.BAN, MOD, days=2, reason="rude")
        assert outcome.banned and outcome.item.open, "a ban does not close the item"
        ban = await m.h.moderation.active_ban(GUILD, MEMBER)
        assert ban is not None and ban.expires_at == clock.now + timedelta(days=2)
        with pytest.raises(Refusal) as refused:
            await m.h.engine.submit(m.request("a lighthouse"))
        assert refused.value.reason is RefusalReason.BANNED and "until" in refused.value.message
        clock.advance(days=1)
        with pytest.raises(Refusal):
            await m.h.engine.submit(m.request("a lighthouse"))
        clock.advance(days=2)
        assert await m.h.moderation.active_ban(GUILD, MEMBER) is None
        job = await m.h.engine.submit(m.request("a lighthouse"))
        await m.h.settle_all()
        assert (await m.h.job(job.id)).status is JobStatus.DONE
        [event] = await m.audit("review.ban")
        assert event.details == {"job": item.job_id, "days": 2, "reason": "rude"}


async def test_a_ban_without_days_lasts(tmp_path):
    clock = Clock()
    async with moderation(tmp_path, clock) as m:
        await m.grant(1000)
        item, _ = await m.held()
        await m.review.act(GUILD, item.id, Action.BAN, MOD)
        clock.advance(days=MAX_BAN_DAYS + 1)
        ban = await m.h.moderation.active_ban(GUILD, MEMBER)
        assert ban is not None and ban.expires_at is None


@pytest.mark.parametrize("days", [0, -1, -30, MAX_BAN_DAYS + 1, 4000, 10**9])
async def test_absurd_ban_durations_are_refused_with_the_allowed_range(tmp_path, days):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, _ = await m.blocked("block")
        with pytest.raises(ReviewError, match=f"from 1 to {MAX_BAN_DAYS}"):
            await m.review.act(GUILD, item.id, Action.BAN, MOD, days=days)
        assert await m.h.moderation.active_ban(GUILD, MEMBER) is None
        assert await m.audit("review.ban") == [] and await m.audit("moderation.ban") == []


@pytest.mark.parametrize("days", [1, MAX_BAN_DAYS])
async def test_the_ends_of_the_ban_range_are_accepted(tmp_path, days):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, _ = await m.blocked("block")
        assert (await m.review.act(GUILD, item.id, Action.BAN, MOD, days=days)).banned


async def test_one_ban_per_item(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, _ = await m.blocked("block")
        await m.review.act(GUILD, item.id, Action.BAN, MOD, days=5)
        with pytest.raises(ReviewError, match=f"ban was already given for this item by <@{MOD}>"):
            await m.review.act(GUILD, item.id, Action.BAN, MOD2)
        ban = await m.h.moderation.active_ban(GUILD, MEMBER)
        assert ban is not None and ban.actor_id == MOD and ban.expires_at is not None


# -- appeals ------------------------------------------------------------------------------------
async def test_the_member_appeal_joins_the_item(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.blocked("block")
        appealed = await m.review.appeal(GUILD, job.id, MEMBER, "  it was a drawing of a cat  ")
        assert appealed.id == item.id and appealed.appeal_note == "it was a drawing of a cat"
        assert appealed.appealed_at is not None and appealed.open
        assert (await m.h.moderation.item(item.id)).appeal_note == "it was a drawing of a cat"
        [event] = await m.audit("review.appeal")
        assert event.actor_id == MEMBER and event.target == f"review:{item.id}"
        assert event.details == {"job": job.id}


async def test_a_held_job_can_be_appealed_too(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.held()
        appealed = await m.review.appeal(GUILD, job.id, MEMBER, "castles are architecture")
        assert appealed.id == item.id and appealed.appeal_note == "castles are architecture"


async def test_only_the_member_whose_job_it_is_can_appeal(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.blocked("block")
        with pytest.raises(ReviewError, match="Only the member"):
            await m.review.appeal(GUILD, job.id, OTHER_MEMBER, "let it through")
        with pytest.raises(ReviewError, match="Only the member"):
            await m.review.appeal(GUILD, "j-no-such-job", MEMBER, "hello")
        assert (await m.h.moderation.item(item.id)).appeal_note is None
        assert await m.audit("review.appeal") == []


@pytest.mark.parametrize("note", ["", "   ", "\n\t", "x" * 1001])
async def test_empty_or_long_appeals_are_refused(tmp_path, note):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.blocked("block")
        with pytest.raises(ReviewError):
            await m.review.appeal(GUILD, job.id, MEMBER, note)
        assert (await m.h.moderation.item(item.id)).appeal_note is None


async def test_an_appeal_of_exactly_the_limit_is_accepted(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        _, job = await m.blocked("block")
        appealed = await m.review.appeal(GUILD, job.id, MEMBER, "y" * 1000)
        assert appealed.appeal_note == "y" * 1000


async def test_a_job_without_a_review_item_has_nothing_to_appeal(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        job = await m.h.engine.submit(m.request("a lighthouse"))
        await m.h.settle_all()
        with pytest.raises(ReviewError, match="nothing to appeal"):
            await m.review.appeal(GUILD, job.id, MEMBER, "why?")


async def test_the_member_learns_the_verdict_after_an_appeal(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, job = await m.blocked("block_charged")
        await m.review.appeal(GUILD, job.id, MEMBER, "please")
        outcome = await m.review.act(GUILD, item.id, Action.REFUND, MOD)
        assert outcome.item.appeal_note == "please"
        [update] = [u for u in m.h.publisher.updates if u.message == outcome.verdict]
        assert update.job.id == job.id and update.job.member_id == MEMBER


# -- history ------------------------------------------------------------------------------------
async def test_history_lists_the_actions_in_order(tmp_path):
    clock = Clock()
    async with moderation(tmp_path, clock) as m:
        await m.grant(1000)
        item, job = await m.held()
        other, _ = await m.held(f"another {FILTERED}")
        await m.review.appeal(GUILD, job.id, MEMBER, "it is a sandcastle")
        clock.advance(minutes=1)
        await m.review.act(GUILD, item.id, Action.STRIKE, MOD, reason="again")
        clock.advance(minutes=1)
        await m.review.act(GUILD, other.id, Action.REJECT, MOD)  # another item: not listed
        await m.review.act(GUILD, item.id, Action.BAN, MOD2, days=3)
        clock.advance(minutes=1)
        await m.review.act(GUILD, item.id, Action.REJECT, MOD2)
        with pytest.raises(AlreadyHandled):
            await m.review.act(GUILD, item.id, Action.APPROVE, MOD)  # refused: not recorded
        events = await m.review.history(item.id)
        assert [(e.action, e.actor_id) for e in events] == [
            ("appeal", MEMBER),
            ("strike", MOD),
            ("ban", MOD2),
            ("reject", MOD2),
        ]
        assert [e.at for e in events] == sorted(e.at for e in events)
        assert events[0].at < events[1].at < events[3].at
        assert events[1].details["strikes"] == 1 and events[2].details["days"] == 3
        assert [e.action for e in await m.review.history(other.id)] == ["reject"]
        assert await m.review.history(9999) == []


# -- per-guild isolation ------------------------------------------------------------------------
async def test_an_item_cannot_be_acted_on_from_another_guild(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        held, held_job = await m.held()
        blocked, blocked_job = await m.blocked("block_charged")
        for item, action in [
            (held, Action.APPROVE),
            (held, Action.REJECT),
            (blocked, Action.REFUND),
            (blocked, Action.DISMISS),
            (blocked, Action.STRIKE),
            (blocked, Action.BAN),
        ]:
            with pytest.raises(ReviewError, match="no such review item"):
                await m.review.act(OTHER_GUILD, item.id, action, MOD)
        assert {i.id for i in await m.h.moderation.open_items(GUILD)} == {held.id, blocked.id}
        assert await m.h.moderation.open_items(OTHER_GUILD) == []
        assert await m.available() == 1000 - 2 * PRICE
        assert await m.h.moderation.strikes(GUILD, MEMBER) == []
        assert await m.h.moderation.active_ban(GUILD, MEMBER) is None
        assert await m.h.moderation.active_ban(OTHER_GUILD, MEMBER) is None
        with pytest.raises(ReviewError):
            await m.review.appeal(OTHER_GUILD, held_job.id, MEMBER, "from elsewhere")
        assert (await m.h.job(held_job.id)).status is JobStatus.HELD
        assert (await m.h.job(blocked_job.id)).charged == PRICE


async def test_a_filter_in_one_guild_does_not_hold_another_guilds_prompts(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        await m.grant(1000, guild=OTHER_GUILD)
        await m.held()  # adds the filter in GUILD
        job = await m.h.engine.submit(m.request(f"a {FILTERED} at dawn", guild=OTHER_GUILD))
        assert job.status is JobStatus.QUEUED
        await m.h.settle_all()
        assert (await m.h.job(job.id)).status is JobStatus.DONE
        assert await m.available(guild=OTHER_GUILD) == 1000 - PRICE
        assert [i.guild_id for i, _ in m.h.reviews.items] == [GUILD]


async def test_a_ban_or_strikes_in_one_guild_do_not_follow_the_member(tmp_path):
    async with moderation(tmp_path) as m:
        await _set(m, strikes_to_ban=1)
        await _set(m, OTHER_GUILD, strikes_to_ban=2)
        await m.grant(1000)
        await m.grant(1000, guild=OTHER_GUILD)
        item, _ = await m.held()
        assert (await m.review.act(GUILD, item.id, Action.STRIKE, MOD)).banned
        with pytest.raises(Refusal):
            await m.h.engine.submit(m.request("a lighthouse"))
        job = await m.h.engine.submit(m.request("a lighthouse", guild=OTHER_GUILD))
        await m.h.settle_all()
        assert (await m.h.job(job.id)).status is JobStatus.DONE
        assert await m.h.moderation.strike_count(OTHER_GUILD, MEMBER, 30) == 0
        # A strike in the other guild starts from one there, not from GUILD's count.
        await m.filters.add(OTHER_GUILD, FILTERED, actor_id=MOD)
        other_item, _ = await m.held(guild=OTHER_GUILD)
        outcome = await m.review.act(OTHER_GUILD, other_item.id, Action.STRIKE, MOD)
        assert outcome.strikes == 1 and not outcome.banned


async def test_refusals_leave_no_audit_trail(tmp_path):
    async with moderation(tmp_path) as m:
        await m.grant(1000)
        item, _ = await m.blocked("block")
        for guild, action, days in (
            (OTHER_GUILD, Action.DISMISS, None),
            (GUILD, Action.APPROVE, None),
            (GUILD, Action.REFUND, None),
            (GUILD, Action.BAN, 0),
        ):
            with pytest.raises(ReviewError):
                await m.review.act(guild, item.id, action, MOD, days=days)
        assert await m.review.history(item.id) == []


async def test_guild_settings_defaults_and_overrides_are_per_guild(tmp_path):
    async with moderation(tmp_path) as m:
        defaults = await m.h.guilds.settings(GUILD)
        assert (defaults.strikes_to_ban, defaults.strike_window_days) == (3, 30)
        await _set(m, strikes_to_ban=5, strike_window_days=7)
        mine, theirs = await m.h.guilds.settings(GUILD), await m.h.guilds.settings(OTHER_GUILD)
        assert (mine.strikes_to_ban, mine.strike_window_days) == (5, 7)
        assert (theirs.strikes_to_ban, theirs.strike_window_days) == (3, 30)
        with pytest.raises(ValueError, match="unknown guild settings"):
            await m.h.db.write(m.h.guilds.update_in, GUILD, strikes=1)
