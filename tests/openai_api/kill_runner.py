"""The bot's engine on the OpenAI lane in a process of its own, for the kill -9 test.

It resumes what the database says is in flight, admits the one planned job if the database does
not have it yet, says "started", then "preview" when a partial image arrives (the call is then
mid-stream), and exits 0 once no job is active. Results are "posted" to the test's HTTP server,
which outlives this process (tests/engine/crash_runner.py's HttpPublisher).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bot.catalog import Model, Operation, RequestOptions
from bot.config import Settings
from bot.engine.engine import EngineSettings
from bot.engine.requests import JobRequest, Requester
from bot.services import build_services
from bot.store.jobs import JobRecord
from tests.engine.crash_runner import CHANNEL, GUILD, HttpPublisher

MEMBER = 5
PROMPT = "a kite over the dunes, killed mid-stream"


class Publisher(HttpPublisher):
    async def on_preview(self, job: JobRecord, image: bytes, mime: str) -> None:
        print("preview", flush=True)


async def main(args: argparse.Namespace) -> int:
    settings = Settings(
        provider="openai",
        database={"path": Path(args.db)},
        openai={"base_url": args.sim_url, "api_key": args.sim_key, "max_retries": 1},
    )
    services = await build_services(settings)
    publisher = Publisher(args.publisher_url)
    engine = services.engine(publisher, settings=EngineSettings(retry_base=0.05, retry_cap=0.2))
    try:
        await engine.start()
        row = await services.db.fetchone("SELECT 1 FROM jobs")
        if row is None:
            await engine.submit(
                JobRequest(
                    Requester(GUILD, CHANNEL, MEMBER),
                    Model.GPT_IMAGE_2,
                    Operation.CREATE,
                    RequestOptions(prompt=PROMPT, size="1536x1024", quality="medium"),
                    confirmed=True,
                )
            )
        print("started", flush=True)
        while await services.jobs.active():
            await asyncio.sleep(0.05)
        return 0
    finally:
        await engine.stop()
        await publisher.http.aclose()
        await services.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--sim-url", required=True)
    parser.add_argument("--sim-key", required=True)
    parser.add_argument("--publisher-url", required=True)
    sys.exit(asyncio.run(main(parser.parse_args())))
