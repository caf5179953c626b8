"""Random sequences of everything that moves Buzz — admissions by several members of two guilds,
every kind of ending, cancels, moderators' decisions, admins' quota changes, period rollovers,
engine restarts — against the real engine, simulator and SQLite file. After every step the
books are checked (holds settle exactly once, with their job; refunds at most what was paid;
no negative balance) and each member's balance is compared with what the ledger promises
(money_model.py). Seeded: a failure names its seed and replays the same steps (the engine's
timing may still vary between runs).

Known gaps other seeds can find (e.g. 465 with STEPS = 80), left for a redesign of the refill
excess into one record per refill, all after an admin changed the allowance: two jobs held
across one refill, one charged and one released, after an earlier refill (one total cannot tell
which job each refill's top-up was for); allowance given back after a refill does not pay for
jobs made after it that took grants. And an admin's take while a job holds part of the grants
takes allowance instead, which the next refill gives back."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest

from bot.catalog import Model as ImageModel
from bot.catalog import Operation, RequestOptions
from bot.civitai.simulator import Outcome
from bot.engine.parts import NotAllowed
from bot.engine.requests import JobRequest, Refusal, RefusalReason, Requester
from bot.review import Action, ReviewError, ReviewService
from bot.store.jobs import ACTIVE, JobStatus
from bot.store.ledger import InvalidAmount
from bot.store.moderation import AlreadyHandled
from tests.engine.harness import Harness
from tests.engine.money_model import (
    Event,
    Model,
    Snapshot,
    check_books,
    check_model,
    snapshot_in,
)
from tests.review.helpers import CHANNEL, FILTERED, GUILD, MOD, OTHER_GUILD, Moderation, moderation

SEEDS = (0, 1, 17, 26)
STEPS = 60
GUILDS = (GUILD, OTHER_GUILD)
MEMBERS = (3003, 3004, 3005)
ROLES = (501, 502)
PRICES = {"low": 13, "medium": 78, "high": 286}  # gpt-image-2 1024x1024
KINDS = (
    "succeed",
    "over",  # charged above the hold
    "under",  # charged below the hold
    "fail",
    "late_refund",
    "block",
    "block_charged",
    "expire",
    "never",  # runs until canceled
    "held",  # the guild's prompt filter holds it for a moderator
)
AMOUNTS = (0, 40, 100, 300, 600)
BALANCE = RefusalReason.BALANCE
# OTHER_GUILD has job limits and a weekly budget: refusals for those too, approvals refused.
LIMITS = (BALANCE, RefusalReason.MEMBER_BUSY, RefusalReason.GUILD_BUSY, RefusalReason.BUDGET)
PERIODS = ("daily", "weekly", "monthly", "none")


@dataclass
class Run:
    m: Moderation
    rng: random.Random
    model: Model
    roles: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict)
    never: list[str] = field(default_factory=list)
    serial: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def h(self) -> Harness:
        return self.m.h

    async def last_entry(self, kind: str, **where: object) -> int:
        sql = "SELECT MAX(id) FROM ledger_entries WHERE kind = ?"
        params: list[object] = [kind]
        for name, value in where.items():
            sql += f" AND {name} = ?"
            params.append(value)
        row = await self.h.db.fetchone(sql, params)
        assert row is not None and row[0] is not None
        return int(row[0])

    async def rule_key(self) -> float:
        row = await self.h.db.fetchone("SELECT COALESCE(MAX(id), 0) FROM ledger_entries")
        return float(row[0]) + 0.5 if row else 0.5

    def who(self) -> tuple[int, int, tuple[int, ...]]:
        guild, member = self.rng.choice(GUILDS), self.rng.choice(MEMBERS)
        return guild, member, self.roles.get((guild, member), ())

    # -- steps --------------------------------------------------------------------------------
    async def admit(self) -> None:
        guild, member, roles = self.who()
        kind, quality = self.rng.choice(KINDS), self.rng.choice(tuple(PRICES))
        self.serial += 1
        tag = f"#{self.serial}#"
        price = PRICES[quality]
        outcome = {
            "succeed": Outcome(),
            "over": Outcome(charge=price + self.rng.choice((1, 50, 400))),
            "under": Outcome(charge=self.rng.randrange(0, price)),
            "fail": Outcome("fail"),
            "late_refund": Outcome("fail", refund_delay=0.03),
            "block": Outcome("block"),
            "block_charged": Outcome("block_charged"),
            "expire": Outcome("expire"),
            "never": Outcome("never"),
            "held": Outcome(self.rng.choice(("succeed", "fail", "block_charged"))),
        }[kind]
        self.h.sim.script(outcome, prompt=tag)
        prompt = f"{'a ' + FILTERED if kind == 'held' else 'a lighthouse'} {tag}"
        request = JobRequest(
            Requester(guild, CHANNEL, member, roles),
            ImageModel.GPT_IMAGE_2,
            Operation.CREATE,
            RequestOptions(prompt=prompt, size="1024x1024", quality=quality),
            confirmed=True,
        )
        before = await self.h.db.read(snapshot_in)
        when = self.m.clock()
        try:
            job = await self.h.engine.submit(request)
        except Refusal as exc:
            self.log.append(f"admit {guild}/{member} {kind} {quality}: refused {exc.reason}")
            await self.check_refused(request, price, exc, before, when)
            return
        hold = await self.h.ledger.hold(job.id)
        assert hold is not None and hold.amount == price
        key = await self.last_entry("hold", job_id=job.id)
        self.model.add(Event(key, "admit", guild, member, when, roles, hold_id=hold.id))
        self.log.append(f"admit {guild}/{member} {kind} {quality}: {job.id} {job.status}")
        if kind == "never":
            self.never.append(job.id)

    async def check_refused(
        self, request: JobRequest, price: int, exc: Refusal, before: Snapshot, when: datetime
    ) -> None:
        """A refused request stores nothing and charges nothing; a refusal for Buzz is right."""
        who = request.requester
        guild, member = who.guild_id, who.member_id
        rows = await self.h.db.fetchall(
            "SELECT id FROM jobs WHERE options LIKE ?", (f"%{request.options.prompt}%",)
        )
        assert rows == [], "a refused request left a job"
        assert exc.reason in LIMITS if guild == OTHER_GUILD else exc.reason is BALANCE, exc
        busy = any(
            h["settled_at"] is None and (h["guild_id"], h["member_id"]) == (guild, member)
            for h in before.holds.values()
        )
        if busy:  # a job of theirs may have ended meanwhile: nothing exact to compare
            return
        after = await self.h.db.read(snapshot_in)
        assert after.accounts.get((guild, member)) == before.accounts.get((guild, member))
        if exc.reason is BALANCE:
            could = self.model.available(before, guild, member, who.roles, when)
            assert could < price, f"refused {price} with {could} available"

    async def cancel(self) -> None:
        active = [j for j in await self.h.jobs.all(active_only=True) if j.status in ACTIVE]
        held = [j for j in await self.h.jobs.all(limit=500) if j.status is JobStatus.HELD]
        pool = active + held
        if not pool:
            return
        job = self.rng.choice(pool)
        moderator = self.rng.random() < 0.3
        actor = Requester(job.guild_id, CHANNEL, MOD if moderator else job.member_id, (), moderator)
        try:
            await self.h.engine.cancel(job.id, actor)
        except NotAllowed as exc:
            self.log.append(f"cancel {job.id}: {exc}")
            return
        self.log.append(f"cancel {job.id} ({job.status})")

    async def review(self) -> None:
        guild = self.rng.choice(GUILDS)
        items = await self.h.moderation.open_items(guild)
        if not items:
            return
        item = self.rng.choice(items)
        action = self.rng.choice(
            {
                "held": (Action.APPROVE, Action.APPROVE, Action.REJECT),
                "blocked": (Action.REFUND, Action.DISMISS),
                "undelivered": (Action.REFUND, Action.DISMISS),
            }.get(item.kind, (Action.DISMISS,))
        )
        try:
            outcome = await self.m.review.act(guild, item.id, action, MOD)
        except (ReviewError, NotAllowed, AlreadyHandled) as exc:
            self.log.append(f"review #{item.id} {action}: {exc}")
            return
        self.log.append(f"review #{item.id} {item.kind} {action}: {outcome.summary}")
        if outcome.refunded:
            job = outcome.job
            key = await self.last_entry("refund", job_id=job.id)
            self.model.add(Event(key, "refund", guild, job.member_id, amount=outcome.refunded))
            # A second moderator pressing Refund pays nothing again.
            with pytest.raises(AlreadyHandled):
                await self.m.review.act(guild, item.id, Action.REFUND, MOD + 1)

    async def admin(self) -> None:
        guild, member, roles = self.who()
        choice = self.rng.randrange(7)
        amount, period = self.rng.choice(AMOUNTS), self.rng.choice(PERIODS)
        if choice <= 2:  # a rule: default, a role's, a member's (lower, raise, zero)
            scope = ("default", "role", "member")[choice]
            target = {"default": 0, "role": self.rng.choice(ROLES), "member": member}[scope]
            await self.h.ledger.set_allowance(guild, scope, target, amount, period, MOD)
            self.model.add(
                Event(
                    await self.rule_key(),
                    "rule",
                    guild,
                    scope=scope,
                    target=target,
                    amount=amount,
                    period=period,
                )
            )
            self.log.append(f"rule {guild} {scope}:{target} = {amount} {period}")
        elif choice == 3:
            scope = self.rng.choice(("role", "member"))
            target = self.rng.choice(ROLES) if scope == "role" else member
            await self.h.ledger.clear_allowance(guild, scope, target, MOD)
            self.model.add(Event(await self.rule_key(), "clear", guild, scope=scope, target=target))
            self.log.append(f"clear {guild} {scope}:{target}")
        elif choice == 4:
            amount = self.rng.choice((10, 100, 500))
            when = self.m.clock()
            await self.h.ledger.grant(guild, member, amount, actor_id=MOD, reason="t", roles=roles)
            key = await self.last_entry("grant", guild_id=guild, member_id=member)
            self.model.add(Event(key, "grant", guild, member, when, roles, amount=amount))
            self.log.append(f"grant {guild}/{member} {amount}")
        elif choice == 5:
            amount = self.rng.choice((10, 100, 500))
            when = self.m.clock()
            try:
                await self.h.ledger.take(
                    guild, member, amount, actor_id=MOD, reason="t", roles=roles
                )
            except InvalidAmount:
                self.log.append(f"take {guild}/{member} {amount}: refused")
                return
            key = await self.last_entry("adjust", guild_id=guild, member_id=member, reason="t")
            self.model.add(Event(key, "take", guild, member, when, roles, amount=amount))
            self.log.append(f"take {guild}/{member} {amount}")
        else:  # the member gains or loses roles
            new = tuple(r for r in ROLES if self.rng.random() < 0.5)
            self.roles[(guild, member)] = new
            self.log.append(f"roles {guild}/{member} = {new}")

    async def advance(self) -> None:
        delta = self.rng.choice(
            (
                timedelta(hours=1),
                timedelta(hours=7),
                timedelta(days=1),
                timedelta(days=8),
                timedelta(days=32),
            )
        )
        self.m.clock.now += delta
        self.log.append(f"clock +{delta} → {self.m.clock.now}")

    async def restart(self) -> None:
        engine = await self.h.restart_engine()
        h = self.h
        self.m.review = ReviewService(
            h.db, engine, h.jobs, h.ledger, h.moderation, h.guilds, self.m.clock
        )
        self.log.append("restart")

    async def settle(self) -> None:
        """Cancel what would run for ever, then let everything end."""
        for job_id in self.never:
            job = await self.h.job(job_id)
            if job.status in ACTIVE and job.status is not JobStatus.DELIVERING:
                actor = Requester(job.guild_id, CHANNEL, job.member_id, ())
                await self.h.engine.cancel(job_id, actor)
        self.never.clear()
        await self.h.settle_all(timeout=60)
        self.log.append("settled")

    async def check(self) -> None:
        snap = await self.h.db.read(snapshot_in)
        check_books(snap)
        check_model(self.model, snap)


async def run_seed(tmp_path, seed: int) -> None:
    rng = random.Random(seed)
    async with moderation(tmp_path) as m:
        run = Run(m, rng, Model(m.h.ledger.default))
        for guild in GUILDS:
            await m.filters.add(guild, FILTERED, actor_id=MOD)
            await m.h.ledger.set_allowance(guild, "default", 0, 300, "weekly", MOD)
        await m.h.guilds.update(
            OTHER_GUILD,
            actor_id=MOD,
            per_member_concurrency=2,
            per_guild_concurrency=4,
            budget_amount=1500,
            budget_period="weekly",
        )
        for guild in GUILDS:
            run.model.add(
                Event(
                    await run.rule_key(),
                    "rule",
                    guild,
                    scope="default",
                    amount=300,
                    period="weekly",
                )
            )
        for guild in GUILDS:  # a grant on top of the allowance: which of them pays matters
            for member in MEMBERS:
                when = m.clock()
                await m.h.ledger.grant(guild, member, 100, actor_id=MOD, reason="t")
                key = await run.last_entry("grant", guild_id=guild, member_id=member)
                # No role rule yet: the week's refill is due first, as with the member's roles.
                run.model.add(Event(key, "grant", guild, member, when, (), amount=100))
        steps = (
            (run.admit, 40),
            (run.cancel, 8),
            (run.review, 12),
            (run.admin, 18),
            (run.advance, 8),
            (run.restart, 4),
            (run.settle, 10),
        )
        actions, weights = zip(*steps, strict=True)
        try:
            for _ in range(STEPS):
                await rng.choices(actions, weights)[0]()
                await run.check()
            # The end: held jobs decided, everything ended, the late refunds booked.
            for guild in GUILDS:
                for item in await m.h.moderation.open_items(guild, limit=500):
                    if item.kind == "held":
                        await m.review.act(guild, item.id, Action.REJECT, MOD)
            await run.settle()
            await run.check()
            # What the orchestrator finally charged (every late refund booked) is what the
            # member was charged.
            later = time.monotonic() + 3600
            for job in await m.h.jobs.all(limit=1000):
                wf = m.h.sim.workflow_for(job.id)
                if wf is not None and job.final:
                    assert job.charged == wf.net_charge(later), f"{job.id}: {job.charged}"
        except AssertionError:
            print(f"seed {seed}, steps:\n" + "\n".join(run.log))
            raise


@pytest.mark.parametrize("seed", SEEDS)
async def test_money_invariants_hold_under_random_steps(tmp_path, seed):
    await run_seed(tmp_path, seed)
