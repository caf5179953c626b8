"""The engine in a process of its own, for the crash test: kill -9 it anywhere, start it again.

It resumes what the database says is in flight, admits whichever of the planned jobs are not in
the database yet (admission is one transaction, so a job either exists or not), and exits 0 once
every job is final. Results are "posted" to the test's HTTP server, which stands in for Discord
(it outlives this process, so it can say what was already posted).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from pathlib import Path

import httpx

from bot.catalog import Model, Operation, RequestOptions
from bot.config import Settings
from bot.engine.engine import EngineSettings
from bot.engine.follow import LongPoll
from bot.engine.publisher import ResultImage, StatusUpdate
from bot.engine.requests import JobRequest, Requester
from bot.services import build_services
from bot.store.jobs import JobRecord

GUILD, CHANNEL = 77, 88


def plan(count: int) -> list[tuple[int, str]]:
    """(member, prompt) for each planned job; the prompt carries its number."""
    return [(1 + k % 5, f"crash job {k} ") for k in range(count)]


class HttpPublisher:
    def __init__(self, base: str) -> None:
        self.http = httpx.AsyncClient(base_url=base, timeout=10)

    async def on_status(self, update: StatusUpdate) -> None:
        return None

    async def on_preview(self, job: JobRecord, image: bytes, mime: str) -> None:
        return None

    async def find_delivery(self, job: JobRecord) -> list[int] | None:
        response = await self.http.get(f"/delivered/{job.id}")
        return response.json()["ids"] if response.status_code == 200 else None

    async def find_status(self, job: JobRecord) -> int | None:
        return None

    async def deliver(self, job: JobRecord, images: list[ResultImage]) -> list[int]:
        response = await self.http.post(
            "/deliver", json={"job": job.id, "images": [len(i.data) for i in images]}
        )
        response.raise_for_status()
        return response.json()["ids"]


async def main(args: argparse.Namespace) -> int:
    settings = Settings(database={"path": Path(args.db)})
    services = await build_services(settings, base_url=args.sim_url, token=args.sim_token)
    publisher = HttpPublisher(args.publisher_url)
    engine = services.engine(
        publisher, settings=EngineSettings(policy=LongPoll(60), retry_base=0.05, retry_cap=0.2)
    )
    try:
        await engine.start()
        print("started", flush=True)
        rng = random.Random()
        for member, prompt in plan(args.jobs):
            row = await services.db.fetchone(
                "SELECT 1 FROM jobs WHERE json_extract(options, '$.prompt') = ?", (prompt,)
            )
            if row is None:
                await engine.submit(
                    JobRequest(
                        Requester(GUILD, CHANNEL, member),
                        Model.GPT_IMAGE_2,
                        Operation.CREATE,
                        RequestOptions(prompt=prompt, size="1024x1024", quality="medium"),
                        confirmed=True,
                    )
                )
                await asyncio.sleep(rng.uniform(0.5, 1.5) * args.pace)
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
    parser.add_argument("--sim-token", required=True)
    parser.add_argument("--publisher-url", required=True)
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--pace", type=float, default=0.0, help="mean seconds between admissions")
    sys.exit(asyncio.run(main(parser.parse_args())))
