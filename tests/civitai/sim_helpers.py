"""Helpers for the simulator's tests: source images, step templates, running to the end."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
from PIL import Image

from bot.civitai.client import OrchestratorClient
from bot.civitai.models import Workflow

WORKFLOWS = "/v2/consumer/workflows"
BLOBS = "/v2/consumer/blobs"


def png_bytes(width: int, height: int, color: str = "teal", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(width: int, height: int, color: str = "teal") -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(width, height, color)).decode()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def upscaler(image: str, repeats: int | None = None) -> dict[str, Any]:
    inp: dict[str, Any] = {"image": image}
    if repeats is not None:
        inp["numberOfRepeats"] = repeats
    return {"$type": "imageUpscaler", "input": inp}


def cutout(image: str, fmt: str | None = None) -> dict[str, Any]:
    inp: dict[str, Any] = {"image": image}
    if fmt is not None:
        inp["format"] = fmt
    return {"$type": "imageBackgroundRemoval", "input": inp}


def enhancement(prompt: str, ecosystem: str = "openai", **extra: Any) -> dict[str, Any]:
    return {
        "$type": "promptEnhancement",
        "input": {"ecosystem": ecosystem, "prompt": prompt, **extra},
    }


def moderation(prompt: str, **extra: Any) -> dict[str, Any]:
    inp = {
        "mode": "prompt",
        "positivePrompt": prompt,
        "includeReasoning": False,
        "storeFullResponse": False,
        **extra,
    }
    return {"$type": "xGuardModeration", "input": inp}


def gen(prompt: str = "a lighthouse", size: str = "256x256", fmt: str = "png") -> dict[str, Any]:
    """A small dall-e-2 imageGen step (300 Buzz), quick to draw."""
    inp = {
        "engine": "openai",
        "model": "dall-e-2",
        "operation": "createImage",
        "prompt": prompt,
        "size": size,
        "outputFormat": fmt,
    }
    return {"$type": "imageGen", "input": inp}


async def run(
    client: OrchestratorClient, steps: list[dict[str, Any]], external_id: str, **extra: Any
) -> Workflow:
    """Submit and follow to the end (wait=300 is 1.5 s at the fixture's speed)."""
    workflow = await client.submit(client.template(steps, external_id, **extra), wait=300)
    while not workflow.terminal:
        assert workflow.id is not None
        workflow = await client.get(workflow.id, wait=300)
    return workflow


def debits_credits(workflow: Workflow) -> tuple[int, int]:
    items = workflow.transactions.items if workflow.transactions else []
    return (
        sum(t.amount for t in items if t.type == "debit"),
        sum(t.amount for t in items if t.type == "credit"),
    )


async def post_steps(
    http: httpx.AsyncClient, steps: list[dict[str, Any]], external_id: str, **params: Any
) -> httpx.Response:
    body = {"steps": steps, "currencies": [], "externalId": external_id}
    return await http.post(WORKFLOWS, json=body, params=params)
