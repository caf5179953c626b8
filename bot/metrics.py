"""The bot's Prometheus metrics (imagebot_*), on a registry of its own.

One `Metrics` per bot, built with the services and shared by the engine, the orchestrator
client, the review service and the HTTP server: never prometheus_client's global registry, so
tests can run many bots in one process. The engine and the client call the small methods
below; nothing here knows about Discord.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from bot.catalog.names import MODEL_NAMES
from bot.catalog.tools import Tool
from bot.store.db import REFUSALS

# The upstream clients' request kinds (the orchestrator's; on BOT_PROVIDER=openai the
# OpenAI-compatible endpoint's generate and edit) and what became of each attempt.
REQUEST_KINDS = (
    *("submit", "whatif", "get", "query", "cancel", "update", "upload", "refresh", "blob"),
    *("generate", "edit"),
)
OK, RETRY, ERROR = "ok", "retry", "error"
# What a job's `model` holds (a model, or a tool) and how a job can end: a bounded label set.
JOB_MODELS = (*MODEL_NAMES, *(tool.value for tool in Tool))
FINAL_STATUSES = ("done", "failed", "blocked", "canceled", "expired", "rejected")
# Long-polls hold a request for up to wait_seconds (60 by default) plus the timeout.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 90.0, 120.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._jobs = Counter(
            "imagebot_jobs_total",
            "Jobs that ended, by model and final status (done, failed, blocked, canceled, "
            "expired, rejected).",
            ["model", "status"],
            registry=r,
        )
        self._in_flight = Gauge(
            "imagebot_jobs_in_flight", "Jobs the engine is driving right now.", registry=r
        )
        self._charged = Counter(
            "imagebot_buzz_charged_total",
            "Buzz members paid at settlement: what the orchestrator charged for their jobs, up "
            "to what they could cover (the rest is imagebot_buzz_loss_total). Released holds "
            "are not counted; moderator refunds are counted apart.",
            registry=r,
        )
        self._refunded = Counter(
            "imagebot_buzz_refunded_total",
            "Buzz given back to members by moderators' Refund decisions (not released holds).",
            registry=r,
        )
        self._loss = Counter(
            "imagebot_buzz_loss_total",
            "Buzz the orchestrator charged above what members could pay, recorded as the "
            "guild's loss at settlement.",
            registry=r,
        )
        self._requests = Counter(
            "imagebot_orchestrator_requests_total",
            "HTTP attempts to the upstream service (the orchestrator and its blob store, or on "
            "the OpenAI lane the endpoint's generate and edit), by kind and outcome: ok, retry "
            "(failed, tried again) or error (failed for good).",
            ["kind", "outcome"],
            registry=r,
        )
        self._latency = Histogram(
            "imagebot_orchestrator_request_seconds",
            "Time of each HTTP attempt upstream (long-polls and streams included), by kind.",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._delivery_failures = Counter(
            "imagebot_delivery_failures_total",
            "Failed attempts to download or post a finished job's images (retried or given up).",
            registry=r,
        )
        # What ImagebotDeliveryFailures alerts on: a failed attempt that a retry put right
        # leaves nothing for anyone to do, a job given up on waits in the review queue.
        self._undelivered = Counter(
            "imagebot_undelivered_jobs_total",
            "Finished jobs whose images were not all posted (given up after the retries): "
            "each waits in the moderators' review queue for Refund or Dismiss.",
            registry=r,
        )
        self._refused_writes = Counter(
            "imagebot_database_refused_writes_total",
            "Writes the SQLite database refused, nothing of them kept (the member is told to try "
            "again, a job tries again later), by reason: busy (another process held the write "
            "lock past the busy timeout), full (the disk), unwritable (read-only or failing).",
            ["reason"],
            registry=r,
        )
        self._lag = Gauge(
            "imagebot_event_loop_lag_seconds",
            "How late the event loop woke from its last sampling sleep.",
            registry=r,
        )
        self._ready = Gauge(
            "imagebot_ready", "1 while connected to Discord and ready, else 0.", registry=r
        )
        # Every series exists from the start: rate() and increase() then see the first error.
        for kind in REQUEST_KINDS:
            self._latency.labels(kind)
            for outcome in (OK, RETRY, ERROR):
                self._requests.labels(kind, outcome)
        for model in JOB_MODELS:
            for status in FINAL_STATUSES:
                self._jobs.labels(model, status)
        for reason in REFUSALS:
            self._refused_writes.labels(reason)

    # -- what the engine, the client and the review service report -------------------------
    def job_ended(self, model: str, status: str) -> None:
        self._jobs.labels(model, status).inc()

    def settled(self, charged: int, loss: int) -> None:
        if charged:
            self._charged.inc(charged)
        if loss:
            self._loss.inc(loss)

    def refunded(self, amount: int) -> None:
        if amount:
            self._refunded.inc(amount)

    def orchestrator_attempt(self, kind: str, outcome: str, seconds: float) -> None:
        self._requests.labels(kind, outcome).inc()
        self._latency.labels(kind).observe(max(0.0, seconds))

    def delivery_failed(self) -> None:
        self._delivery_failures.inc()

    def undelivered(self) -> None:
        self._undelivered.inc()

    def database_refused(self, reason: str) -> None:
        self._refused_writes.labels(reason).inc()

    def loop_lag(self, seconds: float) -> None:
        self._lag.set(max(0.0, seconds))

    # -- values read when scraped ------------------------------------------------------------
    def watch_in_flight(self, count: Callable[[], int]) -> None:
        self._in_flight.set_function(count)

    def watch_ready(self, ready: Callable[[], bool]) -> None:
        self._ready.set_function(lambda: 1.0 if ready() else 0.0)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """(body, content type) in the format the scraper asked for (Prometheus text)."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type
