"""The job engine: admit → hold Buzz → submit → follow → settle → deliver, restart-safe.

A job's state lives in SQLite; the in-memory task that drives it can die at any moment and a
new one, started by `start()`, carries on from the stored state:
- queued: (re)submit with externalId = job id, so a retry finds the same workflow;
- submitted/running: follow the workflow until it ends, then settle and move on, in one
  transaction (status + ledger + review item);
- delivering: ask the publisher whether the result is already posted (exactly once), else
  fetch fresh blob URLs, download, post, record the message ids.
Only the job's own task changes a running job; others (cancel) ask the orchestrator or set a
flag and wake the task.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.catalog import CatalogError, build_request
from bot.catalog.request import ImageRequest
from bot.civitai.client import OrchestratorClient
from bot.civitai.errors import (
    BlobExpired,
    BlobRefused,
    Forbidden,
    NotFound,
    OrchestratorError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from bot.civitai.models import Workflow, WorkflowStatus
from bot.engine.follow import FollowPolicy, LongPoll
from bot.engine.publisher import (
    OperatorAlerts,
    PostFailed,
    Publisher,
    ResultImage,
    ReviewListener,
    StatusUpdate,
)
from bot.engine.requests import JobRequest, Refusal, RefusalReason, Requester
from bot.logs import bind_job
from bot.media.decode import probe_image
from bot.metrics import Metrics
from bot.store.db import Conn, Database, utcnow
from bot.store.guilds import GuildSettings, GuildStore
from bot.store.jobs import JobRecord, JobStatus, JobStore, NewJob, TransitionError
from bot.store.ledger import BudgetExhausted, InsufficientBuzz, Ledger, Settlement
from bot.store.moderation import ModerationStore

log = logging.getLogger(__name__)

J = JobStatus
SOURCE_REF = "source://"
DELIVERY_FAILED = "delivery failed"
POSTING = "posting"
HELD_MESSAGE = "held for a moderator's review before it runs"
REJECTED_MESSAGE = "a moderator decided this request will not run; nothing was charged"
PromptFilter = Callable[[int, str], Awaitable[str | None]]


@dataclass(frozen=True)
class EngineSettings:
    policy: FollowPolicy = field(default_factory=LongPoll)
    whatif: bool = False
    deadline: timedelta = timedelta(minutes=30)
    # Waits after the client gave up on a retryable error, growing to the cap.
    retry_base: float = 2.0
    retry_cap: float = 60.0
    # Downloads and posts of a finished job are retried until this long after it ended.
    delivery_deadline: timedelta = timedelta(minutes=30)
    # Unexpected errors (bugs) while delivering: give up after this many, past the deadline.
    delivery_attempts: int = 5
    reconcile_every: float = 60.0
    # After the deadline and an upstream cancel, how long to wait for the orchestrator's
    # final report before settling from the last one it gave.
    expire_grace: timedelta = timedelta(minutes=10)
    simulated: bool = False


@dataclass(frozen=True)
class Quote:
    request: ImageRequest
    estimate: int
    balance: int
    needs_confirmation: bool = False

    @property
    def balance_after(self) -> int:
        return self.balance - self.estimate


def new_job_id(now: datetime) -> str:
    """Sortable, and valid as an orchestrator externalId ([A-Za-z0-9_-], ≤ 128)."""
    return f"j{int(now.timestamp() * 1000):011x}{secrets.token_hex(3)}"


class NotAllowed(Exception):
    pass


class Engine:
    def __init__(
        self,
        *,
        db: Database,
        jobs: JobStore,
        ledger: Ledger,
        guilds: GuildStore,
        moderation: ModerationStore,
        client: OrchestratorClient,
        publisher: Publisher,
        settings: EngineSettings | None = None,
        reviews: ReviewListener | None = None,
        alerts: OperatorAlerts | None = None,
        prompt_filter: PromptFilter | None = None,
        clock: Callable[[], datetime] = utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self.db, self.jobs, self.ledger, self.guilds = db, jobs, ledger, guilds
        self.moderation = moderation
        self.client = client
        self.publisher = publisher
        self.settings = settings or EngineSettings()
        self.reviews = reviews
        self.alerts = alerts
        self.prompt_filter = prompt_filter
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._alerted: set[str] = set()
        self._closing = False
        # Workflows seen at conclusion, so delivery needs no extra request for fresh URLs.
        self._fresh: dict[str, Workflow] = {}
        self._reconciler: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[None]] = set()
        self.metrics = metrics or Metrics()
        self.metrics.watch_in_flight(self.running)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> int:
        """Resume every job that was queued, submitted, running or delivering."""
        resumed = await self._adopt_orphans()
        if resumed:
            log.info("resumed %d job(s)", len(resumed))
        self._reconciler = asyncio.create_task(self._reconcile(), name="engine-reconcile")
        return len(resumed)

    async def _adopt_orphans(self) -> list[str]:
        """Drive every active job that has no task (after a restart, or when a caller was
        cancelled after its admission had already committed)."""
        orphans = [job.id for job in await self.jobs.active() if job.id not in self._tasks]
        for job_id in orphans:
            self._spawn(job_id)
        return orphans

    async def _reconcile(self) -> None:
        while not self._closing:
            await asyncio.sleep(self.settings.reconcile_every)
            try:
                adopted = await self._adopt_orphans()
            except Exception:
                log.exception("reconcile failed")
                continue
            if adopted:
                log.warning("adopted %d job(s) that had no task: %s", len(adopted), adopted)

    async def stop(self) -> None:
        self._closing = True
        tasks = [*self._tasks.values(), *self._side_tasks]
        if self._reconciler is not None:
            tasks.append(self._reconciler)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def wait_idle(self) -> None:
        """Until no job task runs (tests and benchmarks; wrap in asyncio.timeout)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    def running(self) -> int:
        return len(self._tasks)

    def _spawn(self, job_id: str) -> None:
        if job_id in self._tasks or self._closing:
            return
        task = asyncio.create_task(self._drive(job_id), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t, j=job_id: self._forget(j))

    def _forget(self, job_id: str) -> None:
        self._tasks.pop(job_id, None)
        self._wake.pop(job_id, None)
        self._fresh.pop(job_id, None)

    # -- admission --------------------------------------------------------------------------
    def validate(self, request: JobRequest) -> ImageRequest:
        sources = [s for s in request.sources if s.role == "image"]
        mask = next((s for s in request.sources if s.role == "mask"), None)
        refs = tuple(f"{SOURCE_REF}{i}" for i, s in enumerate(request.sources) if s.role == "image")
        mask_ref = f"{SOURCE_REF}{request.sources.index(mask)}" if mask is not None else None
        options = request.options
        if request.sources:
            options = options.with_sources(refs, mask_ref)
        # Sizes may be Discord's declared ones (before download); unknown means unknown.
        input_size = (
            (sources[0].width, sources[0].height)
            if sources and sources[0].width and sources[0].height
            else None
        )
        try:
            return build_request(request.model, request.operation, options, input_size=input_size)
        except CatalogError as exc:
            raise Refusal(RefusalReason.INVALID, str(exc), errors=exc.errors) from None

    async def preflight(self, request: JobRequest) -> Quote:
        """Every admission check, in order, without holding anything: Refusal, or the quote.

        Lets the front end answer within Discord's 3 seconds (sources may be described by their
        declared sizes only) and ask for a confirmation. `submit` checks everything again,
        atomically, when it holds the Buzz.
        """
        who = request.requester
        validated = await self._precheck(request)
        settings = await self.guilds.get(who.guild_id)
        needs_confirmation = validated.buzz > settings.confirm_above and not request.confirmed

        def check(conn: Conn) -> int:
            mine, theirs = self.jobs.in_flight(conn, who.guild_id, who.member_id)
            _check_concurrency(mine, theirs, settings)
            self.ledger.check_budget(
                conn, who.guild_id, validated.buzz, settings.budget_amount, settings.budget_period
            )
            balance = self.ledger.balance_in(conn, who.guild_id, who.member_id, who.roles)
            if balance.available < validated.buzz:
                now = self.clock()
                raise InsufficientBuzz(
                    validated.buzz, balance.available, balance.allowance, balance.next_refill, now
                )
            return balance.available

        try:
            available = await self.db.read(check)
        except InsufficientBuzz as exc:
            raise Refusal(
                RefusalReason.BALANCE, str(exc), buzz=validated.buzz, balance=exc.have
            ) from None
        except BudgetExhausted as exc:
            raise Refusal(RefusalReason.BUDGET, str(exc), buzz=validated.buzz) from None
        return Quote(validated, validated.buzz, available, needs_confirmation)

    async def _precheck(self, request: JobRequest) -> ImageRequest:
        """Admission checks that need no transaction, in DESIGN.md's order."""
        who = request.requester
        ban = await self.moderation.active_ban(who.guild_id, who.member_id)
        if ban is not None:
            until = f" until {ban.expires_at:%Y-%m-%d %H:%M} UTC" if ban.expires_at else ""
            raise Refusal(RefusalReason.BANNED, f"you are banned from using the bot here{until}")
        settings = await self.guilds.get(who.guild_id)
        if not settings.channel_allowed(who.channel_id, who.parent_channel_id):
            raise Refusal(RefusalReason.CHANNEL, "image commands are not allowed in this channel")
        if not settings.model_enabled(request.model.value):
            raise Refusal(
                RefusalReason.MODEL_DISABLED,
                f"{request.model.value} is switched off on this server",
            )
        return self.validate(request)

    async def submit(self, request: JobRequest, *, launch: bool = True) -> JobRecord:
        """Admit a request: hold its Buzz and queue it (or hold it for review). Raises Refusal.

        With `launch=False` the job waits for `launch()` — for a front end that shows the
        job (its status message) only once it is admitted, before anything happens to it."""
        validated = await self._precheck(request)
        who = request.requester
        settings = await self.guilds.get(who.guild_id)
        if validated.buzz > settings.confirm_above and not request.confirmed:
            raise Refusal(
                RefusalReason.CONFIRM,
                f"this costs {validated.buzz:,} Buzz, above the server's "
                f"{settings.confirm_above:,} Buzz confirmation threshold",
                buzz=validated.buzz,
            )
        now = self.clock()
        job_id = new_job_id(now)
        whatif = await self._whatif(job_id, validated) if self.settings.whatif else None
        hold_amount = max(validated.buzz, whatif or 0)
        held_reason = None
        if self.prompt_filter is not None:
            held_reason = await self.prompt_filter(who.guild_id, request.options.prompt)
        status = J.HELD if held_reason else J.QUEUED
        new = NewJob(
            id=job_id,
            guild_id=who.guild_id,
            channel_id=who.channel_id,
            member_id=who.member_id,
            model=request.model.value,
            operation=request.operation.value,
            options=request.options.as_dict(),
            step=validated.step(),
            estimate=validated.buzz,
            status=status,
            whatif=whatif,
            interaction_token=request.interaction.token if request.interaction else None,
            interaction_expires_at=request.interaction.expires_at if request.interaction else None,
            parent_job_id=request.parent_job_id,
            simulated=self.settings.simulated,
            deadline_at=now + self.settings.deadline,
            upload_limit=request.upload_limit,
        )

        def admit(tx: Conn) -> int | None:
            mine, theirs = self.jobs.in_flight(tx, who.guild_id, who.member_id)
            _check_concurrency(mine, theirs, settings)
            self.ledger.check_budget(
                tx, who.guild_id, hold_amount, settings.budget_amount, settings.budget_period
            )
            self.jobs.insert(tx, new, request.sources)
            self.ledger.hold(tx, who.guild_id, who.member_id, job_id, hold_amount, who.roles)
            if held_reason:
                return self.moderation.create_item(tx, who.guild_id, job_id, "held", held_reason)
            return None

        try:
            item_id = await self.db.write(admit)
        except InsufficientBuzz as exc:
            raise Refusal(
                RefusalReason.BALANCE, str(exc), buzz=hold_amount, balance=exc.have
            ) from None
        except BudgetExhausted as exc:
            raise Refusal(RefusalReason.BUDGET, str(exc), buzz=hold_amount) from None
        job = await self.jobs.get(job_id)
        assert job is not None
        if status is J.HELD:
            await self._notify_review(item_id, job)
        if launch:
            await self.launch(job)
        return job

    async def launch(self, job: JobRecord, status_message_id: int | None = None) -> JobRecord:
        """Start an admitted job, with the message that shows it (when there is one)."""
        if status_message_id is not None:
            await self.db.write(self.jobs.update, job.id, status_message_id=status_message_id)
            job = await self.jobs.get(job.id) or job
        else:
            await self._status(job, HELD_MESSAGE if job.status is J.HELD else None)
        if job.status is J.QUEUED:
            self._spawn(job.id)
        return job

    async def _whatif(self, job_id: str, validated: ImageRequest) -> int | None:
        # A whatif claims its externalId upstream, so it must not use the job's own id.
        template = self.client.template([validated.step()], f"{job_id}-whatif")
        try:
            estimate = await self.client.submit(template, whatif=True)
        except (Unauthorized, Forbidden) as exc:
            await self._alert("auth", str(exc))
            raise Refusal(
                RefusalReason.UPSTREAM,
                "the bot cannot place orders with the orchestrator right now; the operator "
                "has been told",
            ) from None
        except OrchestratorError as exc:
            log.warning("whatif failed for %s, holding the local estimate: %s", job_id, exc)
            return None
        return estimate.cost.total if estimate.cost else None

    # -- moderator decisions on held jobs (run inside the review's own transaction) ----------
    def approve_in(self, tx: Conn, job_id: str) -> JobRecord:
        """A held job is released to run (its Buzz is already held); call adopt() after commit.
        What changed while it waited is checked again: a ban, the concurrency limits."""
        held = self.jobs.load(tx, job_id)
        assert held is not None
        if self.moderation.load_ban(tx, held.guild_id, held.member_id) is not None:
            raise NotAllowed("the member has been banned since; reject the job instead")
        settings = self.guilds.load(tx, held.guild_id)
        _check_concurrency(*self.jobs.in_flight(tx, held.guild_id, held.member_id), settings)
        return self.jobs.transition(
            tx,
            job_id,
            J.QUEUED,
            detail="approved",
            deadline_at=self.clock() + self.settings.deadline,
        )

    def reject_in(self, tx: Conn, job_id: str) -> JobRecord:
        """A held job will not run: nothing charged, the whole hold released."""
        return self._release(tx, job_id, J.REJECTED, error=REJECTED_MESSAGE)

    def adopt(self, job_id: str) -> None:
        """Start driving a job that became runnable outside submit() (an approval)."""
        self._spawn(job_id)

    async def notify(self, job: JobRecord, message: str | None, *, finished: bool = False) -> None:
        """Show the member a job's state with a message (a moderator's verdict, say);
        `finished` when this is the job's ending (a rejection), not news about an old one."""
        await self._status(job, message, finished=finished)

    def _release(self, tx: Conn, job_id: str, status: JobStatus, **changes: Any) -> JobRecord:
        """End a job that never ran upstream: nothing charged, the whole hold released."""
        job = self.jobs.transition(tx, job_id, status, charged=0, **changes)
        self.ledger.settle(tx, job_id, 0)
        return job

    # -- cancel -----------------------------------------------------------------------------
    async def cancel(self, job_id: str, actor: Requester) -> JobRecord:
        job = await self.jobs.get(job_id)
        if job is None or job.guild_id != actor.guild_id:
            raise NotAllowed("no such job here")
        if job.member_id != actor.member_id and not actor.is_moderator:
            raise NotAllowed("only the member who asked (or a moderator) can cancel this job")
        if job.final or job.status is J.DELIVERING:
            raise NotAllowed(f"this job is already {job.status.value}")
        if job.status is J.HELD:

            def withdraw(tx: Conn) -> tuple[JobRecord, int | None]:
                canceled = self._release(
                    tx, job_id, J.CANCELED, cancel_requested_by=actor.member_id
                )
                item = self.moderation.open_item_for_job(tx, job_id)
                if item is None:
                    return canceled, None
                self.moderation.close_item(tx, item.id, "withdrawn", actor.member_id)
                return canceled, item.id

            try:
                job, item_id = await self.db.write(withdraw)
            except TransitionError as exc:  # a moderator decided first
                raise NotAllowed(f"this job was just {exc.current} by a moderator") from None
            await self._status(job, "canceled; nothing was charged")
            if item_id is not None and self.reviews is not None:
                await self.reviews.on_review_changed(item_id)
            return job
        await self.db.write(self.jobs.update, job_id, cancel_requested_by=actor.member_id)
        if job.workflow_id:
            # In the background: the caller is answering a Discord interaction, and the
            # orchestrator may take a while (retries). The job's task settles the ending.
            self._background(self._cancel_upstream(job.workflow_id))
        self._wake_job(job_id)
        refreshed = await self.jobs.get(job_id)
        assert refreshed is not None
        return refreshed

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _wake_job(self, job_id: str) -> None:
        event = self._wake.get(job_id)
        if event is not None:
            event.set()

    async def _sleep(self, job_id: str, seconds: float) -> None:
        """Sleep, but wake early when someone cancels the job."""
        event = self._wake.setdefault(job_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)
        event.clear()

    # -- driving a job ----------------------------------------------------------------------
    async def _drive(self, job_id: str) -> None:
        failures = 0
        while not self._closing:
            job = await self.jobs.get(job_id)
            if job is None or job.final or job.status is J.HELD:
                return
            bind_job(job.id, job.guild_id)  # every log line of this task names the job
            try:
                if job.status is J.QUEUED:
                    await self._submit(job)
                elif job.status in (J.SUBMITTED, J.RUNNING):
                    await self._follow(job)
                elif job.status is J.DELIVERING:
                    await self._deliver(job)
                failures = 0
            except asyncio.CancelledError:
                raise
            except (Unavailable, TransitionError, PostFailed) as exc:
                failures += 1
                delay = min(self.settings.retry_cap, self.settings.retry_base * 2 ** (failures - 1))
                log.warning("job %s: %s; trying again in %.0fs", job_id, exc, delay)
                await self._sleep(job_id, delay)
            except Exception:
                failures += 1
                log.exception("job %s: unexpected error (attempt %d)", job_id, failures)
                await self._sleep(job_id, min(self.settings.retry_cap, 5.0 * failures))

    def _past_deadline(self, job: JobRecord) -> bool:
        return job.deadline_at is not None and self.clock() >= job.deadline_at

    async def _submit(self, job: JobRecord) -> None:
        stop = job.cancel_requested_by is not None or self._past_deadline(job)
        if stop and job.submit_attempted_at is None:
            # Nothing ever reached the orchestrator: nothing to charge.
            if job.cancel_requested_by is not None:
                await self._finish_unsubmitted(job, J.CANCELED, "canceled")
            else:
                await self._finish_unsubmitted(job, J.EXPIRED, "it could not be submitted in time")
            return
        # Once any attempt may have reached the orchestrator, the job remembers it until the
        # orchestrator answers: a later attempt that was refused outright proves nothing about
        # the earlier ones.
        may_exist = job.submit_attempted_at is not None
        if not may_exist:
            # From here on the workflow may exist upstream even if we never hear back: a
            # restart re-submits (same externalId, so the same workflow) instead of giving up.
            job = await self.db.write(self._mark_attempt, job.id)
        template = self.client.template([await self._resolved_step(job)], job.id)
        # Recovering a workflow we mean to stop: get it back now, follow it to its end.
        wait = 0 if stop else self.settings.policy.submit_wait
        try:
            workflow = await self.client.submit(template, wait=wait)
        except Unavailable as exc:
            if not exc.maybe_accepted and not may_exist:
                # Every attempt so far was refused outright: nothing exists upstream.
                await self.db.write(self.jobs.update, job.id, submit_attempted_at=None)
            elif stop and self._past_grace(job):
                # We asked to stop it, and the orchestrator never said whether it exists.
                log.error(
                    "job %s: could not learn whether its workflow exists upstream; ending it "
                    "uncharged (check the orchestrator for externalId %s)",
                    job.id,
                    job.id,
                )
                await self._finish_unsubmitted(job, J.EXPIRED, "it could not be confirmed in time")
                return
            raise
        except ValidationFailed as exc:
            fields = ", ".join(exc.fields) or "the request"
            await self._finish_unsubmitted(
                job,
                J.FAILED,
                f"the orchestrator refused it ({fields}); nothing was charged",
                detail=str(exc),
            )
            return
        except (Unauthorized, Forbidden) as exc:
            await self._alert("auth" if isinstance(exc, Unauthorized) else "forbidden", str(exc))
            await self._finish_unsubmitted(
                job,
                J.FAILED,
                "the bot cannot place orders with the orchestrator right now; nothing was "
                "charged and the operator has been told",
                detail=str(exc),
            )
            return
        self._alerted.discard("auth")
        self._alerted.discard("forbidden")
        job = await self.db.write(
            self.jobs.transition,
            job.id,
            J.SUBMITTED,
            workflow_id=workflow.id,
            workflow_status=str(workflow.status),
            submitted_at=self.clock(),
        )
        await self._status(job, None)
        fresh = await self.jobs.get(job.id)
        if fresh is not None and fresh.cancel_requested_by is not None and workflow.id:
            await self._cancel_upstream(workflow.id)
        await self._observe(job, workflow)

    def _mark_attempt(self, tx: Conn, job_id: str) -> JobRecord:
        self.jobs.update(tx, job_id, submit_attempted_at=self.clock())
        marked = self.jobs.load(tx, job_id)
        assert marked is not None
        return marked

    async def _finish_unsubmitted(
        self, job: JobRecord, status: JobStatus, message: str, *, detail: str | None = None
    ) -> None:
        job = await self.db.write(self._release, job.id, status, error=message, detail=detail)
        await self._status(job, message)

    async def _resolved_step(self, job: JobRecord) -> dict[str, Any]:
        """The stored step with source://N references replaced by data URLs."""
        text = json.dumps(job.step)
        if SOURCE_REF not in text:
            return job.step
        sources = await self.jobs.sources(job.id)

        def resolve(value: Any) -> Any:
            if isinstance(value, str) and value.startswith(SOURCE_REF):
                source = sources[int(value[len(SOURCE_REF) :])]
                return f"data:{source.mime};base64,{base64.b64encode(source.data).decode()}"
            if isinstance(value, list):
                return [resolve(v) for v in value]
            if isinstance(value, dict):
                return {k: resolve(v) for k, v in value.items()}
            return value

        return resolve(job.step)

    async def _follow(self, job: JobRecord) -> None:
        """Follow the workflow to its end. Past the deadline, ask the orchestrator to stop it
        and settle from what it reports once it has ended (a success is still delivered); if
        it never ends, settle from its last report after a grace period."""
        assert job.workflow_id is not None
        attempt = 0
        canceled_sent = expired = False
        workflow: Workflow | None = None
        while True:
            job = await self.jobs.get(job.id) or job
            if job.cancel_requested_by is not None and not canceled_sent:
                canceled_sent = True
                await self._cancel_upstream(job.workflow_id)
            if self._past_deadline(job) and not expired:
                expired = True
                await self._cancel_upstream(job.workflow_id)
            if expired and workflow is not None and self._past_grace(job):
                log.error(
                    "job %s: workflow %s never ended; settling from its last report",
                    job.id,
                    job.workflow_id,
                )
                await self._conclude(job, workflow, forced=J.EXPIRED)
                return
            delay, wait = self.settings.policy.next_request(attempt)
            if expired:
                delay, wait = min(delay, self.settings.retry_cap), min(wait, 10)
            if delay:
                await self._sleep(job.id, delay)
            attempt += 1
            try:
                workflow = await self.client.get(job.workflow_id, wait=wait)
            except NotFound:
                # The orchestrator lost it: nothing to charge, nothing to deliver.
                log.error("job %s: workflow %s is gone upstream", job.id, job.workflow_id)
                await self._conclude(job, Workflow(id=job.workflow_id, status="failed"))
                return
            if workflow.terminal:
                late = expired and workflow.status != WorkflowStatus.SUCCEEDED
                await self._conclude(job, workflow, forced=J.EXPIRED if late else None)
                return
            await self._observe(job, workflow)

    def _past_grace(self, job: JobRecord) -> bool:
        return (
            job.deadline_at is not None
            and self.clock() >= job.deadline_at + self.settings.expire_grace
        )

    async def _cancel_upstream(self, workflow_id: str | None) -> None:
        """Ask the orchestrator to stop a workflow. Best effort: whatever it answers, the job
        is settled from what it reports when the workflow ends."""
        if not workflow_id:
            return
        try:
            await self.client.cancel(workflow_id)
        except OrchestratorError as exc:
            log.warning("workflow %s: cancel not accepted (%s)", workflow_id, exc)

    async def _observe(self, job: JobRecord, workflow: Workflow) -> bool:
        """Record progress; conclude if the workflow ended. True when the job left running."""
        if workflow.terminal:
            await self._conclude(job, workflow)
            return True
        status, position = str(workflow.status), workflow.queue_position()
        if job.status is J.RUNNING and (status, position) == (
            job.workflow_status,
            job.queue_position,
        ):
            return False
        changes: dict[str, Any] = {"workflow_status": status, "queue_position": position}
        if status == WorkflowStatus.PROCESSING and job.started_at is None:
            changes["started_at"] = self.clock()
        job = await self.db.write(self.jobs.transition, job.id, J.RUNNING, **changes)
        await self._status(job, None, workflow.progress())
        return False

    async def _conclude(
        self, job: JobRecord, workflow: Workflow, *, forced: JobStatus | None = None
    ) -> None:
        charged = workflow.charged()
        blocked = workflow.blocked()
        if forced is not None:
            status = forced
        elif blocked:
            status = J.BLOCKED
        elif workflow.status == WorkflowStatus.SUCCEEDED:
            status = J.DELIVERING if workflow.images() else J.FAILED
        else:
            status = {
                WorkflowStatus.EXPIRED.value: J.EXPIRED,
                WorkflowStatus.CANCELED.value: J.CANCELED,
            }.get(str(workflow.status), J.FAILED)
        images = [
            {"blob_id": img.id, "width": img.width, "height": img.height}
            for img in workflow.images()
        ]
        message = _ending_message(status, charged)

        def settle(tx: Conn) -> tuple[JobRecord, Settlement, int | None]:
            """The job's ending, its money and its review item commit together."""
            ended = self.jobs.transition(
                tx,
                job.id,
                status,
                charged=charged,
                workflow_status=str(workflow.status),
                result_images=images,
                error=None if status is J.DELIVERING else message,
                # A long-poll may never have seen "processing": take the orchestrator's time.
                started_at=job.started_at or workflow.started_at,
                deliver_by=(
                    self.clock() + self.settings.delivery_deadline
                    if status is J.DELIVERING
                    else None
                ),
            )
            settlement = self.ledger.settle(tx, job.id, charged)
            item_id = None
            if status is J.BLOCKED:
                reason = _block_reason(workflow)
                item_id = self.moderation.create_item(tx, job.guild_id, job.id, "blocked", reason)
            return ended, settlement, item_id

        job, settlement, item_id = await self.db.write(settle)
        self.metrics.settled(settlement.charged, settlement.loss)
        if settlement.loss:
            log.warning(
                "job %s: charged %d above what the member could pay", job.id, settlement.loss
            )
        if status is J.DELIVERING:
            self._fresh[job.id] = workflow
        await self._status(job, None if status is J.DELIVERING else message)
        if item_id is not None:
            await self._notify_review(item_id, job)

    async def _deliver(self, job: JobRecord) -> None:
        """Download and post the images, once, patiently: both are retried until the job's
        delivery deadline. A post may have happened if an earlier attempt reached the
        publisher (a crash, a lost answer): only then ask it first. What cannot be fetched by
        the deadline is told to the member and put before the moderators with its share."""
        events = await self.jobs.events(job.id)
        if any(detail == POSTING for _, detail, _ in events):
            existing = await self.publisher.find_delivery(job)
            if existing is not None:
                await self._delivered(job, existing)
                return
        deadline = job.deliver_by or self.clock() + self.settings.delivery_deadline
        try:
            images, total = await self._fetch_results(job, deadline)
            if not images:
                await self._undeliverable(
                    job, f"none of the {total} image(s) could be fetched from the orchestrator"
                )
                return
            job = await self.db.write(
                self.jobs.transition,
                job.id,
                J.DELIVERING,
                detail=POSTING,
                missing_images=total - len(images),
            )
            message_ids = await self._post(job, images, deadline)
        except (asyncio.CancelledError, Unavailable, TransitionError):
            raise
        except Exception as exc:
            attempts = 1 + sum(1 for _, detail, _ in events if detail == DELIVERY_FAILED)
            if attempts < self.settings.delivery_attempts or self.clock() < deadline:
                await self.db.write(
                    self.jobs.transition, job.id, J.DELIVERING, detail=DELIVERY_FAILED
                )
                raise
            log.exception("job %s: giving up on delivery after %d attempts", job.id, attempts)
            await self._undeliverable(job, f"the images could not be posted ({exc})")
            return
        if message_ids is not None:
            await self._delivered(job, message_ids)

    async def _post(
        self, job: JobRecord, images: list[ResultImage], deadline: datetime
    ) -> list[int] | None:
        """Post until it works or the deadline passes (then the job is undeliverable: None)."""
        attempt = 0
        while True:
            try:
                return await self.publisher.deliver(job, images)
            except PostFailed as exc:
                self.metrics.delivery_failed()
                if not exc.retry or self.clock() >= deadline:
                    await self._undeliverable(job, f"the images could not be posted ({exc})")
                    return None
                delay = self._backoff(attempt, deadline)
                log.warning("job %s: %s; posting again in %.0fs", job.id, exc, delay)
            await self._sleep(job.id, delay)
            attempt += 1
            # A failed post may have left part of a result behind: it is removed, or found
            # whole, before posting again.
            existing = await self.publisher.find_delivery(job)
            if existing is not None:
                return existing

    def _backoff(self, attempt: int, deadline: datetime) -> float:
        """Capped, jittered exponential backoff that does not sleep past `deadline`."""
        ceiling = min(self.settings.retry_cap, self.settings.retry_base * 2**attempt)
        delay = ceiling / 2 + random.uniform(0, ceiling / 2)
        left = (deadline - self.clock()).total_seconds()
        return max(0.0, min(delay, left))

    async def _undeliverable(self, job: JobRecord, reason: str) -> None:
        message = "the images could not be posted; a moderator will look at the charge"

        def fail(tx: Conn) -> tuple[JobRecord, int]:
            failed = self.jobs.transition(tx, job.id, J.FAILED, error=message)
            return failed, self.moderation.create_item(
                tx, job.guild_id, job.id, "undelivered", reason[:500]
            )

        job, item_id = await self.db.write(fail)
        await self._status(job, message)
        await self._notify_review(item_id, job)

    async def _delivered(self, job: JobRecord, message_ids: list[int]) -> None:
        missing, total = job.missing_images, len(job.result_images)
        message = None
        if missing:
            message = (
                f"{missing} of {total} images could not be fetched; the others are posted, "
                "and a moderator will look at the charge"
            )

        def finish(tx: Conn) -> tuple[JobRecord, int | None]:
            done = self.jobs.transition(
                tx,
                job.id,
                J.DONE,
                delivered_message_ids=message_ids,
                delivered_at=self.clock(),
                error=message,
            )
            if not missing:
                return done, None
            share = missing_share(done.charged or 0, missing, total)
            reason = f"{missing} of {total} images could not be fetched"
            return done, self.moderation.create_item(
                tx, job.guild_id, job.id, "undelivered", reason, refund_amount=share or None
            )

        job, item_id = await self.db.write(finish)
        await self._status(job, message)
        if item_id is not None:
            await self._notify_review(item_id, job)

    async def _fetch_results(
        self, job: JobRecord, deadline: datetime
    ) -> tuple[list[ResultImage], int]:
        """Every image of the workflow, fetched now (signed URLs expire) and checked to be an
        image: (the images in order, how many there are). Failures are retried — an expired
        URL after asking the orchestrator for fresh ones — until `deadline`."""
        assert job.workflow_id is not None
        workflow = self._fresh.pop(job.id, None)
        fetched: dict[int, ResultImage] = {}
        total = len(job.result_images)
        attempt = 0
        while True:
            if workflow is None:
                try:
                    workflow = await self.client.get(job.workflow_id)
                except Unavailable as exc:
                    log.warning("job %s: cannot get fresh image URLs: %s", job.id, exc)
                except NotFound:
                    log.warning("job %s: the orchestrator no longer has its workflow", job.id)
                    break
            if workflow is not None:
                blobs = workflow.images()
                total = len(blobs)
                stale = False
                for index, blob in enumerate(blobs):
                    if index in fetched:
                        continue
                    image = await self._fetch_one(job, index, blob.id, blob.url)
                    if image is None:
                        stale = stale or not blob.url
                    elif isinstance(image, ResultImage):
                        fetched[index] = image
                    else:
                        stale = True
                if len(fetched) == total:
                    break
                if stale:
                    workflow = None  # ask for fresh URLs next time round
            self.metrics.delivery_failed()  # this round left images unfetched
            if self.clock() >= deadline:
                break
            delay = self._backoff(attempt, deadline)
            log.warning(
                "job %s: %d of %d image(s) not fetched yet; trying again in %.0fs",
                job.id,
                total - len(fetched),
                total,
                delay,
            )
            await self._sleep(job.id, delay)
            attempt += 1
        return [fetched[i] for i in sorted(fetched)], total

    async def _fetch_one(
        self, job: JobRecord, index: int, blob_id: str, url: str | None
    ) -> ResultImage | bool | None:
        """One image; None when it failed for now, False when its URL needs refreshing."""
        if not url:
            return None
        try:
            data = await self.client.download_blob(url)
        except BlobExpired:
            return False
        except (Unavailable, BlobRefused) as exc:
            log.warning("job %s: image %d not fetched: %s", job.id, index + 1, exc)
            return None
        try:
            mime, width, height = await asyncio.to_thread(probe_image, data)
        except ValueError as exc:
            # A 200 whose body is not an image (an error page, a cut-off file): retried.
            log.warning("job %s: image %d is not a readable image (%s)", job.id, index + 1, exc)
            return None
        return ResultImage(index, blob_id, mime, width, height, data)

    # -- notifications ----------------------------------------------------------------------
    async def _status(
        self,
        job: JobRecord,
        message: str | None,
        progress: float | None = None,
        *,
        finished: bool | None = None,
    ) -> None:
        ended = job.final if finished is None else finished
        if ended:
            self.metrics.job_ended(job.model, job.status.value)
        try:
            await self.publisher.on_status(StatusUpdate(job, message, progress, ended))
        except Exception:
            log.exception("job %s: status update failed", job.id)

    async def _notify_review(self, item_id: int | None, job: JobRecord) -> None:
        if self.reviews is None or item_id is None:
            return
        item = await self.moderation.item(item_id)
        if item is None:
            return
        try:
            await self.reviews.on_review_item(item, job)
        except Exception:
            log.exception("job %s: could not notify moderators", job.id)

    async def _alert(self, key: str, message: str) -> None:
        """Tell the operator once per kind of problem, not once per job."""
        if key in self._alerted:
            return
        self._alerted.add(key)
        log.error("operator action needed: %s", message)
        if self.alerts is not None:
            try:
                await self.alerts.on_operator_alert(key, message)
            except Exception:
                log.exception("operator alert failed")


def _check_concurrency(mine: int, theirs: int, settings: GuildSettings) -> None:
    if mine >= settings.per_member_concurrency:
        raise Refusal(
            RefusalReason.MEMBER_BUSY,
            f"you already have {mine} job(s) running; the limit here is "
            f"{settings.per_member_concurrency}",
        )
    if theirs >= settings.per_guild_concurrency:
        raise Refusal(
            RefusalReason.GUILD_BUSY,
            f"the server already has {theirs} jobs running (its limit); try again in a minute",
        )


def _ending_message(status: JobStatus, charged: int) -> str | None:
    paid = f"{charged:,} Buzz charged" if charged else "nothing was charged"
    return {
        J.DELIVERING: None,
        J.FAILED: f"the image generation failed; {paid}",
        J.BLOCKED: "the content filter blocked this request; moderators will review it",
        J.CANCELED: f"canceled; {paid}",
        J.EXPIRED: f"it did not finish in time; {paid}",
    }.get(status)


def _block_reason(workflow: Workflow) -> str:
    for job in workflow.jobs():
        if job.blocked_reason:
            return job.blocked_reason
    for img in workflow.images():
        if img.blocked_reason:
            return f"output image blocked: {img.blocked_reason}"
    errors = workflow.output_errors()
    return errors[0] if errors else "blocked by the content filter"


def missing_share(charged: int, missing: int, total: int) -> int:
    """The part of a charge that paid for the images that never arrived (rounded half up)."""
    if total <= 0 or missing <= 0:
        return 0
    return (2 * charged * missing + total) // (2 * total)
