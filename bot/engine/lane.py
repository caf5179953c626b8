"""A lane: the engine's one interface to an upstream image service (the Civitai orchestrator,
or an OpenAI-compatible Images API). The engine, the ledger, the review queue and delivery
stay lane-agnostic; a lane knows how to run a job upstream to its end, stop it, price it
(when it can) and fetch its images.

A lane's `validate` turns what a member asked into the lane's own request (checked against
its catalog and priced from its table: admission holds that price). Its `run` drives one job
from where the database says it is (queued, submitted, running) until it ends upstream,
reporting its progress through the `Run` it is given, and returns the Ending the engine
settles: what happened, what it cost, what to deliver. A lane whose images arrive in-band
(bytes, not URLs) hands them over in the Ending: they are stored in the same transaction as
the settlement, and its `fetch_results` reads them back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from bot.catalog.request import RequestOptions
from bot.engine.publisher import ResultImage
from bot.engine.requests import JobRequest
from bot.store.jobs import JobRecord, JobStatus, SourceImage
from bot.store.results import StoredResult


class UpstreamUnavailable(Exception):
    """The upstream service could not be reached for now (5xx, 429, timeouts, connections),
    after its own retries: the engine tries the job again later. `maybe_accepted`: a request
    that may have been acted on upstream (a submit that may exist)."""

    def __init__(self, message: str, *, maybe_accepted: bool = True) -> None:
        super().__init__(message)
        self.maybe_accepted = maybe_accepted


class OperatorProblem(Exception):
    """The upstream service refuses the bot itself (its token, its account, its credit):
    only the operator can fix it."""


@dataclass(frozen=True)
class Ending:
    """How a job ended upstream, for the engine to settle in one transaction."""

    status: JobStatus  # DELIVERING (images to post), FAILED, BLOCKED, CANCELED or EXPIRED
    charged: int = 0  # what the upstream service charged, in Buzz
    upstream_status: str | None = None
    # What the results phase fetches: one dict per image (blob_id, width, height).
    images: tuple[dict[str, Any], ...] = ()
    # For the member; None: the engine's words for the status and the charge.
    message: str | None = None
    # For operators: the job's event detail (the upstream's own words).
    detail: str | None = None
    # For moderators, when the status is BLOCKED.
    block_reason: str | None = None
    started_at: datetime | None = None
    # A text step's result (a prompt enhancement's), kept with the job for the member to use.
    output: dict[str, Any] | None = None
    # The upstream service says this model (or tool) is unavailable or retired: it is switched
    # off for the deployment until an admin switches it on again.
    unavailable_model: str | None = None
    # The highest content rating (pg, pg13, r, x, xxx) of the outputs, when the lane knows
    # it: the engine sends a result rated above the job's max_rating to review, not the
    # channel. `withheld`: the upstream service kept the outputs back for their rating only
    # (not a content-filter block); they are a mature result a moderator may release.
    rating: str | None = None
    withheld: bool = False
    # The lane's own last view (a workflow, images in hand), so delivery need not ask again.
    upstream: Any = field(default=None, compare=False)
    # In-band images (bytes): stored with the job in the settling transaction.
    results: tuple[StoredResult, ...] = field(default=(), compare=False)
    # What the upstream service reported using (tokens...), stored with the job and audited.
    usage: dict[str, Any] | None = None


class LaneRequest(Protocol):
    """A request a lane accepted: its price in Buzz, what the member should know, and the
    step stored with the job (what `run` sends upstream; sources as source://N)."""

    @property
    def buzz(self) -> int: ...

    @property
    def warnings(self) -> tuple[str, ...]: ...

    def step(self) -> dict[str, Any]: ...


class Run(Protocol):
    """What a lane may do while it runs a job: the engine's side of the conversation."""

    @property
    def job(self) -> JobRecord:
        """The job as last stored (cancel requests included)."""

    async def refresh(self) -> JobRecord:
        """Read the job again (someone may have asked to cancel it)."""

    async def sleep(self, seconds: float) -> None:
        """Sleep, waking early when the job is canceled."""

    def past_deadline(self) -> bool: ...

    def past_grace(self) -> bool: ...

    async def mark_attempt(self) -> None:
        """From now on the job may exist upstream (remembered across restarts)."""

    async def clear_attempt(self) -> None:
        """Nothing exists upstream after all (every attempt was refused outright)."""

    async def submitted(self, upstream_id: str | None, upstream_status: str | None) -> None:
        """The upstream service accepted the job."""

    async def progress(
        self,
        upstream_status: str,
        queue_position: int | None = None,
        *,
        started: bool = False,
        fraction: float | None = None,
    ) -> None:
        """The job is running upstream (or waiting in its queue)."""

    async def preview(self, image: bytes, mime: str) -> None:
        """A partial image, as it forms (lanes that stream them)."""

    async def alert(self, key: str, message: str) -> None:
        """Something only the operator can fix (told once per kind)."""

    def recovered(self, key: str) -> None:
        """A problem the operator was told about went away."""


class Followed(Protocol):
    """What every lane does with a job once admitted, and all a lane the bot has switched away
    from still does: its jobs' ends."""

    async def run(self, run: Run) -> Ending:
        """Take the job from its stored state to its end upstream."""

    async def cancel(self, job: JobRecord) -> None:
        """Ask the upstream service to stop the job (best effort; `run` settles it)."""

    async def fetch_results(
        self,
        job: JobRecord,
        upstream: Any,
        deadline: datetime,
        sleep: Callable[[float], Awaitable[None]],
        alert: Callable[[str, str], Awaitable[None]],
    ) -> tuple[list[ResultImage], int]:
        """The finished job's images, each checked to be an image, retried until `deadline`:
        (the images fetched, in order; how many there are). What only the operator can fix
        is told through `alert` (key, text)."""


class Lane(Followed, Protocol):
    """A lane may also name the steps besides imageGen it runs in `tool_steps` (a frozenset of
    step types: imageUpscaler, imageBackgroundRemoval, promptEnhancement); without it, the
    results' Upscale and Remove background and prompt enhancement are not offered. A lane whose
    call cannot be picked up again once cut short sets `resumable = False`: the engine then lets
    calls under way finish (for a while) when the process stops (a lane that runs jobs of
    several says which with `resumes(job)`)."""

    name: str

    def validate(
        self,
        request: JobRequest,
        options: RequestOptions,
        input_size: tuple[int, int] | None,
    ) -> LaneRequest:
        """Check and price a request against this lane's catalog (`options` carry the sources
        as source://N; `input_size` is the first source's size when known). Raises
        CatalogError naming the option."""

    async def whatif(
        self, job_id: str, step: dict[str, Any], sources: tuple[SourceImage, ...] = ()
    ) -> int | None:
        """The upstream service's own price for a step, when it can say (else None). `sources`:
        the request's, for the step's source://N (none yet: no price for such a step)."""


class SwitchedLanes:
    """The lane jobs run on now, and the one the operator switched from (BOT_PROVIDER, at a
    restart). A job of the old one (`belongs`: submitted there, perhaps charging; or its
    images waiting to be posted) is ended there, delivered and settled from what it cost,
    not failed with its images lost. New requests are checked and priced by the current
    lane."""

    def __init__(self, current: Lane, previous: Followed, belongs: Callable[[JobRecord], bool]):
        self.current, self.previous, self._belongs = current, previous, belongs
        self.name = current.name
        self.tool_steps: frozenset[str] = getattr(current, "tool_steps", frozenset())
        self.streams_previews: bool = getattr(current, "streams_previews", False)

    def _lane(self, job: JobRecord) -> Followed:
        return self.previous if self._belongs(job) else self.current

    def resumes(self, job: JobRecord) -> bool:
        """Whether the job's own lane picks its call up again after a restart: a stop waits
        only for the calls that cannot be (a Civitai job followed is not one of them)."""
        return bool(getattr(self._lane(job), "resumable", True))

    def validate(
        self,
        request: JobRequest,
        options: RequestOptions,
        input_size: tuple[int, int] | None,
    ) -> LaneRequest:
        return self.current.validate(request, options, input_size)

    async def run(self, run: Run) -> Ending:
        return await self._lane(run.job).run(run)

    async def cancel(self, job: JobRecord) -> None:
        await self._lane(job).cancel(job)

    async def whatif(
        self, job_id: str, step: dict[str, Any], sources: tuple[SourceImage, ...] = ()
    ) -> int | None:
        return await self.current.whatif(job_id, step, sources)

    async def fetch_results(
        self,
        job: JobRecord,
        upstream: Any,
        deadline: datetime,
        sleep: Callable[[float], Awaitable[None]],
        alert: Callable[[str, str], Awaitable[None]],
    ) -> tuple[list[ResultImage], int]:
        return await self._lane(job).fetch_results(job, upstream, deadline, sleep, alert)
