"""`GET /metrics` (Prometheus) and `GET /healthz` over HTTP, plus the event-loop lag sampler.

Started with the bot and stopped when it closes; off unless `metrics.port` is set. It knows
nothing of Discord: the bot hands it a function that says why it is not ready (None: ready).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from bot.config import MetricsSettings
from bot.metrics import Metrics

log = logging.getLogger(__name__)

# Why the bot is not ready to serve members, or None when it is.
Readiness = Callable[[], str | None]
LAG_EVERY = 1.0


class QuietBadRequests(logging.Filter):
    """aiohttp logs a malformed request (a port scanner, a broken probe) at ERROR with a
    traceback: it is the client's fault, not a bug here, so it becomes one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            first = (str(exc.message).strip().splitlines() or [""])[0].rstrip(":")
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "metrics port: refused a malformed request (%s %s)"
            record.args = (exc.code, first)
            record.exc_info, record.exc_text = None, None
        return True


HTTP_LOG = logging.getLogger(f"{__name__}.http")


class MetricsUnavailable(Exception):
    """The metrics port could not be opened (in use, not allowed): the operator's to fix."""


class MetricsServer:
    def __init__(
        self,
        metrics: Metrics,
        readiness: Readiness,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        lag_every: float = LAG_EVERY,
    ) -> None:
        self.metrics = metrics
        self.readiness = readiness
        self.host = host
        self.wanted_port = port
        self.lag_every = lag_every
        self.port: int | None = None  # the bound port while serving
        self._runner: web.AppRunner | None = None
        self._sampler: asyncio.Task[None] | None = None
        # imagebot_ready says what /healthz says.
        metrics.watch_ready(lambda: readiness() is None)

    @classmethod
    def from_settings(
        cls, metrics: Metrics, settings: MetricsSettings, readiness: Readiness
    ) -> MetricsServer:
        return cls(metrics, readiness, host=settings.host, port=settings.port)

    @property
    def enabled(self) -> bool:
        return self.wanted_port is not None

    async def start(self) -> None:
        """Serve, when a port is configured; raises MetricsUnavailable if it cannot."""
        if not self.enabled or self._runner is not None:
            return
        assert self.wanted_port is not None
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        # No access log: a scrape every few seconds would drown the bot's own lines.
        if not any(isinstance(f, QuietBadRequests) for f in HTTP_LOG.filters):
            HTTP_LOG.addFilter(QuietBadRequests())
        runner = web.AppRunner(app, access_log=None, logger=HTTP_LOG)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.wanted_port).start()
        except OSError as exc:
            await runner.cleanup()
            raise MetricsUnavailable(
                f"cannot serve metrics on {self.host}:{self.wanted_port} ({exc.strerror or exc}); "
                "change BOT_METRICS__PORT / BOT_METRICS__HOST"
            ) from None
        self._runner = runner
        self.port = runner.addresses[0][1]
        self._sampler = asyncio.create_task(self._sample_lag(), name="event-loop-lag")
        log.info("serving /metrics and /healthz on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.port = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.exposition(request.headers.get(hdrs.ACCEPT, ""))
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})

    async def _healthz(self, request: web.Request) -> web.Response:
        reason = self.readiness()
        if reason is None:
            return json_response(200, {"status": "ok"})
        return json_response(503, {"status": "unavailable", "reason": reason})

    async def _sample_lag(self) -> None:
        """How late a sleep wakes: the time the loop was too busy to run anything else."""
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(self.lag_every)
            self.metrics.loop_lag(loop.time() - asked - self.lag_every)


def json_response(status: int, body: dict[str, object]) -> web.Response:
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", charset="utf-8"
    )
