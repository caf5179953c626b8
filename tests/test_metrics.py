"""/metrics and /healthz over real HTTP, against the running bot (fake Discord, simulator):
what an operator's Prometheus and load balancer see as members' jobs come and go."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.civitai.simulator import Outcome
from bot.config import load_settings
from bot.discord_adapter.bot import ImageBot
from bot.metrics import Metrics
from bot.metrics_server import MetricsServer, MetricsUnavailable
from bot.services import build_services
from bot.store import db as dbmod
from tests.discord.harness import finish, settings_for, started, world
from tests.discord.test_cancel import click_cancel, running
from tests.discord_admin.helpers import COST, blocked, item_message, mod_channel, press, request
from tests.store.read_only import unwritable, write_locked

METRICS = {"metrics": {"port": 0}}


def url(bot: ImageBot, path: str) -> str:
    port = bot.metrics_server.port
    assert port, "the metrics server is not serving"
    return f"http://127.0.0.1:{port}{path}"


async def scrape(bot: ImageBot) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, parsed as Prometheus parses it."""
    async with httpx.AsyncClient() as http:
        response = await http.get(url(bot, "/metrics"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum over every series of `name` that has `labels` (and any others)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def create(w: Any, prompt: str) -> Any:
    """gpt-image-2, low quality, 1024x1024: 13 Buzz."""
    return await w.fake.slash(
        w.guild,
        w.channel,
        w.member,
        "create gpt-image-2",
        options={"prompt": prompt, "size": "1024x1024", "quality": "low"},
    )


async def test_healthz_is_200_while_connected_and_the_server_goes_with_the_bot(tmp_path):
    async with world(tmp_path, **METRICS) as w:
        async with httpx.AsyncClient() as http:
            health = await http.get(url(w.bot, "/healthz"))
            assert health.status_code == 200
            assert health.json() == {"status": "ok"}
        samples = await scrape(w.bot)
        assert value(samples, "imagebot_ready") == 1
        assert value(samples, "imagebot_jobs_in_flight") == 0
        assert value(samples, "imagebot_event_loop_lag_seconds") >= 0
        assert ("imagebot_event_loop_lag_seconds", frozenset()) in samples
        port = w.bot.metrics_server.port
        await w._stop()  # the bot closes
        assert w.bot.unready_reason() == "shutting down"
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://127.0.0.1:{port}/healthz")


async def test_a_sharded_bot_connected_to_discord_is_ready(tmp_path):
    """With BOT_DISCORD__SHARD_COUNT the gateway connections are the shards': the bot's own
    `ws` stays None, which read as "reconnecting to Discord" for ever — /healthz answered 503,
    imagebot_ready was 0 (ImagebotNotReady fired) and the heartbeat said not connected."""
    async with world(tmp_path, discord={"shard_count": 2}, **METRICS) as w:
        async with httpx.AsyncClient() as http:
            health = await http.get(url(w.bot, "/healthz"))
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert value(await scrape(w.bot), "imagebot_ready") == 1


async def test_healthz_is_503_with_the_reason_until_the_bot_is_connected(tmp_path):
    """The server runs, the bot has not connected to Discord: not ready, and it says why."""
    settings = settings_for(tmp_path, **METRICS)
    services = await build_services(settings, base_url="http://127.0.0.1:9", token="unused")
    try:
        bot = ImageBot(services)
        await bot.metrics_server.start()
        try:
            async with httpx.AsyncClient() as http:
                health = await http.get(url(bot, "/healthz"))
            assert health.status_code == 503
            assert health.json() == {
                "status": "unavailable",
                "reason": "not connected to Discord yet",
            }
            samples = await scrape(bot)
            assert value(samples, "imagebot_ready") == 0
        finally:
            await bot.metrics_server.stop()
    finally:
        await services.aclose()


async def test_metrics_are_off_unless_a_port_is_set(tmp_path):
    async with world(tmp_path) as w:
        assert w.bot.metrics_server.port is None


def test_the_metrics_port_and_host_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert load_settings().metrics.port is None
    monkeypatch.setenv("BOT_METRICS__PORT", "9464")
    monkeypatch.setenv("BOT_METRICS__HOST", "0.0.0.0")
    settings = load_settings().metrics
    assert (settings.port, settings.host) == (9464, "0.0.0.0")


async def test_a_busy_metrics_port_stops_the_bot_from_starting_with_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsUnavailable, match=f"127.0.0.1:{port}.*BOT_METRICS__PORT"):
            async with world(tmp_path, metrics={"port": port}):
                pass


async def test_a_finished_job_moves_the_counters(tmp_path):
    async with world(tmp_path, **METRICS) as w:
        await w.grant(1000)
        job, _ = await finish(w, await create(w, "a lighthouse"))
        await w.wait_idle()
        samples = await scrape(w.bot)
        assert job.charged
        done = {"model": "gpt-image-2", "status": "done"}
        assert value(samples, "imagebot_jobs_total", **done) == 1
        assert total(samples, "imagebot_jobs_total") == 1
        assert (
            value(samples, "imagebot_buzz_charged_total")
            == job.charged
            == 1000 - (await w.available())
        )
        assert value(samples, "imagebot_buzz_loss_total") == 0
        assert value(samples, "imagebot_buzz_refunded_total") == 0
        for kind in ("submit", "blob"):
            ok = {"kind": kind, "outcome": "ok"}
            assert value(samples, "imagebot_orchestrator_requests_total", **ok) >= 1, kind
        assert total(samples, "imagebot_orchestrator_requests_total", outcome="error") == 0
        attempts = total(samples, "imagebot_orchestrator_requests_total")
        assert total(samples, "imagebot_orchestrator_request_seconds_count") == attempts
        assert value(samples, "imagebot_jobs_in_flight") == 0
        assert value(samples, "imagebot_delivery_failures_total") == 0


async def test_writes_the_database_refuses_are_counted_by_why(tmp_path, monkeypatch):
    """A lock held past the busy timeout, or a disk that turned read-only: the bot keeps
    running and connected, but every member is told to try again, so the operator's alert
    needs a series of its own (ImagebotDatabaseRefusingWrites)."""
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_MS", 300)  # 10 s in production
    async with world(tmp_path, **METRICS) as w:
        await w.grant(1000)
        reasons = ("busy", "full", "unwritable")
        samples = await scrape(w.bot)
        for reason in reasons:  # there from the start, at 0
            assert ("imagebot_database_refused_writes_total", frozenset({("reason", reason)})) in (
                samples
            )
        with write_locked(tmp_path / "bot.sqlite3"):
            refused = await create(w, "a lighthouse")
            await refused.wait_for_original(lambda m: "nothing was done" in m["content"])
        with unwritable(tmp_path / "bot.sqlite3"):
            refused = await create(w, "a lighthouse")
            await refused.wait_for_original(lambda m: "nothing was done" in m["content"])
        samples = await scrape(w.bot)
        refusals = "imagebot_database_refused_writes_total"
        # At least the refused request's write (a status edit's may land in the window too).
        assert value(samples, refusals, reason="busy") >= 1
        assert value(samples, refusals, reason="unwritable") >= 1
        assert value(samples, refusals, reason="full") == 0


async def test_a_job_in_flight_shows_then_goes(tmp_path):
    async with world(tmp_path, **METRICS) as w:
        await w.grant(1000)
        job = await running(w)
        assert value(await scrape(w.bot), "imagebot_jobs_in_flight") == 1
        await click_cancel(w, job, w.member)
        await w.wait_job(job.id, "canceled")
        await w.wait_idle()
        samples = await scrape(w.bot)
        assert value(samples, "imagebot_jobs_in_flight") == 0
        assert value(samples, "imagebot_jobs_total", model="gpt-image-2", status="canceled") == 1


async def test_a_failed_job_counts_as_failed_and_charges_nothing(tmp_path):
    async with world(tmp_path, **METRICS) as w:
        await w.grant(1000)
        w.sim.script(Outcome("fail"))
        job = await started(w, await create(w, "doomed"))
        await w.wait_job(job.id, "failed")
        await w.wait_idle()
        samples = await scrape(w.bot)
        assert value(samples, "imagebot_jobs_total", model="gpt-image-2", status="failed") == 1
        assert value(samples, "imagebot_jobs_total", model="gpt-image-2", status="done") == 0
        assert value(samples, "imagebot_buzz_charged_total") == 0


async def test_a_charge_above_what_the_member_can_pay_is_counted_as_loss(tmp_path):
    async with world(tmp_path, **METRICS) as w:
        await w.grant(13)  # exactly the estimate; the orchestrator charges 50
        w.sim.script(Outcome(charge=50))
        job, _ = await finish(w, await create(w, "pricier than quoted"))
        await w.wait_idle()
        samples = await scrape(w.bot)
        assert job.charged == 50
        assert value(samples, "imagebot_buzz_charged_total") == 13  # what the member paid
        assert value(samples, "imagebot_buzz_loss_total") == 37  # the guild's loss


async def test_a_moderator_refund_is_counted_as_refunded(tmp_path):
    async with world(tmp_path, **METRICS) as w:
        await w.set_guild(mod_channel_id=mod_channel(w))
        await w.grant(1000)
        job = await blocked(w, "a blocked teapot")
        await w.wait_idle()
        assert value(await scrape(w.bot), "imagebot_buzz_charged_total") == COST
        item = await item_message(w, job)
        await press(w, item, "Refund", w.moderator)
        samples = await scrape(w.bot)
        assert value(samples, "imagebot_buzz_refunded_total") == COST
        assert value(samples, "imagebot_jobs_total", model="gpt-image-2", status="blocked") == 1


async def test_orchestrator_retries_and_failed_downloads_are_counted(tmp_path):
    """One retry per request here. A 503 on submit is retried and passes; the blob store
    failing twice makes the download give up once (one failed delivery round), after which
    the engine fetches the image and the job ends done."""
    civitai = {"max_retries": 1, "retry_max_delay_seconds": 0.01}
    async with world(tmp_path, civitai=civitai, **METRICS) as w:
        engine = w.bot.engine
        engine.parts.settings = dataclasses.replace(
            engine.settings, retry_base=0.01, retry_cap=0.05
        )
        await w.grant(1000)
        w.sim.fault(503, route="submit")
        w.sim.fault(503, route="blob", times=2)
        job, _ = await finish(w, await request(w, "patience"))
        await w.wait_idle()
        samples = await scrape(w.bot)
        assert value(samples, "imagebot_jobs_total", model="gpt-image-2", status="done") == 1

        def requests(kind: str, outcome: str) -> float:
            labels = {"kind": kind, "outcome": outcome}
            return value(samples, "imagebot_orchestrator_requests_total", **labels)

        assert (requests("submit", "retry"), requests("submit", "error")) == (1, 0)
        assert requests("submit", "ok") == 1
        assert (requests("blob", "retry"), requests("blob", "error")) == (1, 1)
        assert requests("blob", "ok") == 1
        assert value(samples, "imagebot_delivery_failures_total") == 1
        assert value(samples, "imagebot_buzz_charged_total") == job.charged == COST


async def test_a_blocked_event_loop_shows_as_lag(tmp_path):
    """Slow synchronous work holds the loop: the sampler's next wake-up is late by about that
    long (sampled every 0.2 s here; the gauge is read as soon as the sampler has run)."""
    async with world(tmp_path, **METRICS) as w:
        server = w.bot.metrics_server
        await server.stop()
        server.lag_every = 0.2
        await server.start()
        registry = w.services.metrics.registry
        await asyncio.sleep(0)  # the sampler starts its first sleep
        time.sleep(0.5)  # noqa: ASYNC251 -- the point: block the loop as a bug would
        lag = 0.0
        for _ in range(100):  # a few turns of the loop, well within the next 0.2 s
            await asyncio.sleep(0)
            lag = registry.get_sample_value("imagebot_event_loop_lag_seconds") or 0.0
            if lag:
                break
        assert lag >= 0.3


async def test_a_malformed_request_on_the_metrics_port_is_one_warning_not_a_traceback(caplog):
    """A port scanner or a broken probe is the network's noise, not a bug in the bot."""
    server = MetricsServer(Metrics(), lambda: None, port=0)
    await server.start()
    try:
        for garbage in (b"GARBAGE\r\n\r\n", b"GET /\x1b[31mred HTTP/1.1\r\nHost: x\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(garbage)
            answer = await asyncio.wait_for(reader.read(100), 10)
            writer.close()
            await writer.wait_closed()
            assert answer.startswith(b"HTTP/1.0 400")
    finally:
        await server.stop()
    bad = [r for r in caplog.records if "request" in r.getMessage().lower()]
    assert bad, caplog.text
    assert all(r.levelno <= logging.WARNING and r.exc_info is None for r in bad), caplog.text
    assert "\x1b" not in caplog.text


async def test_only_a_job_whose_images_were_given_up_on_counts_as_undelivered(tmp_path):
    """ImagebotDeliveryFailures says "N finished job(s) could not be posted ... they wait in
    /mod queue": it reads imagebot_undelivered_jobs_total, one per job given up on. A blob
    store that fails once and then serves is a retried attempt (delivery_failures), not an
    undelivered job: the image was posted and nothing waits for a moderator."""
    civitai = {"max_retries": 0, "retry_max_delay_seconds": 0.01}
    async with world(tmp_path, civitai=civitai, **METRICS) as w:
        engine = w.bot.engine
        engine.parts.settings = dataclasses.replace(
            engine.settings,
            retry_base=0.01,
            retry_cap=0.05,
            delivery_deadline=timedelta(seconds=0.3),
        )
        await w.grant(1000)
        w.sim.fault(503, route="blob", times=1)
        await finish(w, await request(w, "patience"))
        await w.wait_idle()
        samples = await scrape(w.bot)
        assert value(samples, "imagebot_jobs_total", model="gpt-image-2", status="done") == 1
        assert value(samples, "imagebot_delivery_failures_total") == 1  # the attempt
        assert ("imagebot_undelivered_jobs_total", frozenset()) in samples
        assert value(samples, "imagebot_undelivered_jobs_total") == 0  # nothing to alert on

        w.sim.script(Outcome(unavailable_blobs=(0,)))
        lost = await started(w, await request(w, "never fetched"))
        await w.wait_job(lost.id, "failed", timeout=30)
        await w.wait_idle()
        samples = await scrape(w.bot)
        assert value(samples, "imagebot_undelivered_jobs_total") == 1
        assert value(samples, "imagebot_jobs_total", model="gpt-image-2", status="failed") == 1


async def test_every_jobs_series_exists_at_zero_before_the_first_job(tmp_path):
    """A series born at 1 hides its first job from rate() and increase(): five jobs failing
    in a row after a start made ImagebotJobsFailing's "at least 5 in 15 minutes" see four,
    and it never fired (alerts.test.yml has the case). Each model and tool the bot runs has
    its series from the start, by final status, before any job."""
    async with world(tmp_path, **METRICS) as w:
        samples = await scrape(w.bot)
        statuses = ("done", "failed", "blocked", "canceled", "expired", "rejected")
        for model in ("gpt-image-2", "dall-e-3", "upscaler", "prompt-enhancement"):
            for status in statuses:
                key = ("imagebot_jobs_total", frozenset({("model", model), ("status", status)}))
                assert samples.get(key) == 0, key


async def test_every_orchestrator_request_kind_exists_at_zero_before_its_first_attempt(tmp_path):
    """Uploads (edit sources), blob refreshes and mature-content updates are requests too: their
    series, born at their first attempt, hid a first failure from ImagebotOrchestratorErrors'
    rate(). Every kind the client sends exists from the start, like submit and get."""
    async with world(tmp_path, **METRICS) as w:
        samples = await scrape(w.bot)
        for kind in ("submit", "whatif", "get", "cancel", "update", "upload", "refresh", "blob"):
            for outcome in ("ok", "retry", "error"):
                labels = frozenset({("kind", kind), ("outcome", outcome)})
                assert samples.get(("imagebot_orchestrator_requests_total", labels)) == 0, labels
            count = ("imagebot_orchestrator_request_seconds_count", frozenset({("kind", kind)}))
            assert samples.get(count) == 0, kind


async def test_an_expired_blob_url_refreshed_is_not_counted_as_an_error(tmp_path):
    """A signed blob URL that expired (404) is routine: the bot asks for a fresh one and the
    download passes. It must not count as a request failed for good, which the
    ImagebotOrchestratorErrors alert reads."""
    async with world(tmp_path, **METRICS) as w:
        await w.grant(1000)
        w.sim.fault(404, route="blob", times=1)
        job, _ = await finish(w, await request(w, "an expired link"))
        await w.wait_idle()
        samples = await scrape(w.bot)
        labels = {"kind": "blob"}
        assert (
            value(samples, "imagebot_orchestrator_requests_total", outcome="error", **labels) == 0
        )
        assert (
            value(samples, "imagebot_orchestrator_requests_total", outcome="retry", **labels) == 1
        )
        assert value(samples, "imagebot_orchestrator_requests_total", outcome="ok", **labels) == 1
        assert job.status.value == "done"


async def test_the_openai_lanes_requests_are_counted_like_the_orchestrators(tmp_path):
    """On BOT_PROVIDER=openai the endpoint is the upstream service: its failed attempts feed
    the same counters the ImagebotOrchestratorErrors alert reads. A 503 then a success is one
    retry and one ok; a prompt the endpoint refuses (moderation) is the endpoint working, not
    an error."""
    from tests.discord.test_openai_lane import openai_world

    retries = {"max_retries": 2, "retry_max_delay_seconds": 0.01}
    async with openai_world(tmp_path, openai=retries, **METRICS) as (w, sim):
        await w.grant(1000)
        sim.script("server_error", status=503)
        job, _ = await finish(w, await request(w, "a lighthouse"))
        assert job.status.value == "done"
        sim.script("moderation_blocked")
        blocked = await started(w, await request(w, "a storm"))
        await w.wait_job(blocked.id, "blocked")
        await w.wait_idle()
        samples = await scrape(w.bot)

        def attempts(outcome: str) -> float:
            labels = {"kind": "generate", "outcome": outcome}
            return value(samples, "imagebot_orchestrator_requests_total", **labels)

        assert (attempts("ok"), attempts("retry"), attempts("error")) == (2, 1, 0)
