"""A loopback OpenAI-compatible Images API: both endpoints, streamed previews, scripted faults.

Used by the tests and by the bot itself when no OPENAI_API_KEY is set. It speaks
POST {base}/images/generations (JSON) and POST {base}/images/edits (multipart), with Bearer auth
(401 on a wrong key), OpenAI-style validation errors (sim_rules.py), server-sent events with
`partial_images` previews per image then a `*.completed` event with usage, or a plain JSON body
when the model cannot stream or the request did not ask to. Images are real PNG/JPEG/WebP
placeholders of the size and format asked (bot/civitai/placeholder.py).

Runtimes are drawn from the Civitai guide's table times `speed`. Tests script outcomes
(`script`) and read what the simulator received (`received`, `requests`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import secrets
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from bot.civitai.placeholder import render
from bot.openai_api.catalog import MODEL_NAMES
from bot.openai_api.sim_outcomes import (
    OUTCOMES,
    Outcome,
    early_answer,
    error_response,
    job_meta,
    json_response,
)
from bot.openai_api.sim_rules import SimError, SimJob, Source, check, typed_form
from bot.openai_api.sim_usage import usage

log = logging.getLogger(__name__)

# The guide's per-image wall times (seconds); mini is the quick one.
RUNTIMES: dict[str, tuple[float, float]] = {
    "dall-e-2": (3, 8),
    "dall-e-3": (10, 20),
    "gpt-image-1": (10, 30),
    "gpt-image-1-mini": (5, 15),
    "gpt-image-1.5": (10, 30),
    "gpt-image-2": (15, 45),
}
PLACEHOLDER_FORMATS = {"png": "png", "jpeg": "jpeg", "webp": "webP"}
PREFIX = {"generations": "image_generation", "edits": "image_edit"}
# What the "bad_last_image" outcome sends as its last image: a page, not an image.
NOT_AN_IMAGE = b"<html><body>upstream error</body></html>"


@dataclass(frozen=True)
class Received:
    """One request as it arrived (the Authorization header left out)."""

    route: str
    fields: dict[str, Any]
    files: list[Source]
    headers: dict[str, str]


class OpenAISimulator:
    def __init__(
        self,
        *,
        api_key: str = "sim-openai-key",
        speed: float = 1.0,
        seed: int | None = None,
        models: list[str] | None = None,
        max_image_side: int | None = None,
        keepalive: bool = True,
        keep: int = 256,
    ) -> None:
        self.api_key = api_key
        self.speed = speed
        self.models = frozenset(MODEL_NAMES if models is None else models)
        # Load tests cap the placeholder images so rendering does not dominate the run.
        self.max_image_side = max_image_side
        self.keepalive = keepalive  # comment lines between events, as proxies send
        self._rng = random.Random(seed)
        self._scripted: list[tuple[Outcome, int]] = []
        self._keyed: dict[str, list[Any]] = {}
        self._images: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._files: OrderedDict[str, bytes] = OrderedDict()
        self.requests: Counter[str] = Counter()
        # The latest requests, bounded: the bot runs this simulator for days without a key.
        self.received: deque[Received] = deque(maxlen=keep)
        self.jobs: deque[SimJob] = deque(maxlen=keep)
        self._runner: web.AppRunner | None = None
        self._final_gate: asyncio.Event | None = None
        self.base_url = ""

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/images/generations", self._generations)
        app.router.add_post("/v1/images/edits", self._edits)
        app.router.add_get("/v1/sim-files/{name}", self._file)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound}/v1"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> OpenAISimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting (tests) -------------------------------------------------------------------
    def script(
        self, outcome: Outcome | str, *, times: int = 1, prompt: str | None = None, **options: Any
    ) -> None:
        """Decide how the next `times` requests end (or those whose prompt contains `prompt`).
        `options` are Outcome's fields: status, retry_after, after_events, delay, code."""
        base = Outcome(outcome) if isinstance(outcome, str) else outcome
        chosen = replace(base, **options)
        if prompt is not None:
            self._keyed[prompt] = [chosen, times]
        else:
            self._scripted.append((chosen, times))

    def hold_final_images(self) -> asyncio.Event:
        """From now on every streamed final image waits until the returned event is set: a test
        can prove that previews reach the client while the request is still running."""
        self._final_gate = asyncio.Event()
        return self._final_gate

    def _next_outcome(self, prompt: object) -> Outcome:
        text = prompt if isinstance(prompt, str) else ""
        for key, entry in list(self._keyed.items()):
            if key in text:
                entry[1] -= 1
                if entry[1] <= 0:
                    del self._keyed[key]
                return entry[0]
        if self._scripted:
            outcome, times = self._scripted[0]
            if times <= 1:
                self._scripted.pop(0)
            else:
                self._scripted[0] = (outcome, times - 1)
            return outcome
        for kind in OUTCOMES:  # a prompt marker such as [sim:moderation_blocked], for demos
            if f"[sim:{kind}]" in text:
                return Outcome(kind)
        return Outcome()

    # -- HTTP handlers -----------------------------------------------------------------------
    async def _generations(self, request: web.Request) -> web.StreamResponse:
        self.requests["generations"] += 1
        if (denied := self._auth(request)) is not None:
            return denied
        try:
            fields = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            fields = None
        if not isinstance(fields, dict):
            return error_response(
                SimError(400, "We could not parse the JSON body of your request.")
            )
        self._record(request, "generations", fields, [])
        return await self._serve(request, "generations", fields, [])

    async def _edits(self, request: web.Request) -> web.StreamResponse:
        self.requests["edits"] += 1
        if (denied := self._auth(request)) is not None:
            return denied
        if not request.content_type.startswith("multipart/"):
            return error_response(SimError(400, "Edits take multipart/form-data.", code=None))
        form: dict[str, str] = {}
        files: list[Source] = []
        reader = await request.multipart()
        async for part in reader:
            name = getattr(part, "name", None) or ""
            if getattr(part, "filename", None) is not None:
                data = bytes(await part.read())  # type: ignore[union-attr]
                ctype = part.headers.get("Content-Type")  # type: ignore[union-attr]
                files.append(Source(name, part.filename, ctype, data))  # type: ignore[union-attr]
            else:
                form[name] = await part.text()  # type: ignore[union-attr]
        fields = typed_form(form)
        self._record(request, "edits", fields, files)
        return await self._serve(request, "edits", fields, files)

    async def _file(self, request: web.Request) -> web.Response:
        data = self._files.get(request.match_info["name"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    # -- internals ---------------------------------------------------------------------------
    def _auth(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "")
        if given == f"Bearer {self.api_key}":
            return None
        key = given.removeprefix("Bearer ").strip()
        # OpenAI quotes the start and end of a wrong key: the client must not repeat it.
        shown = f"{key[:3]}***{key[-4:]}" if len(key) > 8 else "***"
        message = (
            f"Incorrect API key provided: {shown}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
            if key
            else "You didn't provide an API key."
        )
        return error_response(SimError(401, message, code="invalid_api_key"))

    def _record(
        self, request: web.Request, route: str, fields: dict[str, Any], files: list[Source]
    ) -> None:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        self.received.append(Received(route, fields, files, headers))

    async def _serve(
        self, request: web.Request, route: str, fields: dict[str, Any], files: list[Source]
    ) -> web.StreamResponse:
        outcome = self._next_outcome(fields.get("prompt"))
        if outcome.kind == "slow":
            await asyncio.sleep(outcome.delay)
        early = early_answer(outcome, request.headers.get("Authorization", ""))
        if early is not None:
            return early
        try:
            job = check(route, fields, files, self.models)
        except SimError as exc:
            return error_response(exc)
        if outcome.kind in ("moderation_blocked", "content_policy_violation"):
            return error_response(
                SimError(
                    400,
                    "Your request was rejected as a result of our safety system.",
                    code=outcome.kind,
                    kind="image_generation_user_error",
                )
            )
        self.jobs.append(job)
        if job.stream and outcome.kind != "no_stream":
            return await self._stream(request, job, outcome)
        return await self._json(job, outcome, fields)

    async def _stream(
        self, request: web.Request, job: SimJob, outcome: Outcome
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        prefix = PREFIX[job.route]
        sent = 0

        async def send(kind: str, payload: dict[str, Any]) -> bool:
            nonlocal sent
            if outcome.kind == "break" and sent >= outcome.after_events:
                # Flush what was sent, then close without the final chunk: a broken stream.
                if request.transport is not None:
                    request.transport.close()
                return False
            if self.keepalive:
                await response.write(b": keep-alive\n\n")
            data = json.dumps({"type": kind, **payload})
            await response.write(f"event: {kind}\ndata: {data}\n\n".encode())
            sent += 1
            return True

        for index in range(job.n):
            runtime = self._runtime(job)
            steps = job.partial_images + 1
            for k in range(job.partial_images):
                await asyncio.sleep(runtime / steps)
                image = await self._image(job, index, k)
                if outcome.kind == "bad_partial":
                    image = image[: len(image) // 2]
                preview = {"b64_json": _b64(image), "partial_image_index": k, **job_meta(job)}
                if not await send(f"{prefix}.partial_image", preview):
                    return response
            await asyncio.sleep(runtime / steps)
            if outcome.kind == "error_event":
                error = SimError(400, "Your request was rejected.", code=outcome.code).body()
                await send("error", error)
                break
            if outcome.kind == "no_completed":
                continue
            if self._final_gate is not None:
                await self._final_gate.wait()
            image = await self._image(job, index, None)
            if outcome.kind == "bad_last_image" and index == job.n - 1:
                image = NOT_AN_IMAGE
            final = {
                "b64_json": "not base64!!" if outcome.kind == "bad_base64" else _b64(image),
                **job_meta(job),
                "usage": usage(job, 1, job.partial_images),
            }
            if not await send(f"{prefix}.completed", final):
                return response
        await response.write_eof()
        return response

    async def _json(self, job: SimJob, outcome: Outcome, fields: dict[str, Any]) -> web.Response:
        await asyncio.sleep(sum(self._runtime(job) for _ in range(job.n)))
        data = []
        for index in range(job.n):
            image = await self._image(job, index, None)
            item: dict[str, Any]
            if outcome.kind == "bad_last_image" and index == job.n - 1:
                image = NOT_AN_IMAGE
            if outcome.kind == "bad_base64":
                item = {"b64_json": "not base64!!"}
            elif not job.spec.gpt and fields.get("response_format", "url") == "url":
                item = {"url": self._publish(image)}
            else:
                item = {"b64_json": _b64(image)}
            if job.spec.name == "dall-e-3":
                item["revised_prompt"] = f"A detailed rendering of: {job.prompt}"
            data.append(item)
        body: dict[str, Any] = {"created": int(time.time()), "data": data}
        if job.spec.gpt:
            body.update(job_meta(job))
            body["usage"] = usage(job, job.n, 0)
        return json_response(200, body)

    def _runtime(self, job: SimJob) -> float:
        low, high = RUNTIMES[job.spec.name]
        if job.spec.name == "dall-e-3" and job.quality == "hd":
            low, high = 15, 40
        return self._rng.uniform(low, high) * self.speed

    def _publish(self, image: bytes) -> str:
        name = secrets.token_hex(8)
        self._files[name] = image
        while len(self._files) > 32:
            self._files.popitem(last=False)
        return f"{self.base_url}/sim-files/{name}"

    async def _image(self, job: SimJob, index: int, partial: int | None) -> bytes:
        caption = f"{job.spec.name} · {job.width}x{job.height} · {index + 1}/{job.n}"
        if partial is not None:
            caption += f" · preview {partial + 1}/{job.partial_images}"
        width, height = job.width, job.height
        if self.max_image_side:
            scale = min(1.0, self.max_image_side / max(width, height))
            width, height = max(1, int(width * scale)), max(1, int(height * scale))
        fmt = PLACEHOLDER_FORMATS[job.output_format if job.spec.gpt else "png"]
        key = (job.prompt, width, height, fmt, caption)
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        data = await asyncio.to_thread(render, job.prompt, width, height, fmt, caption)
        self._images[key] = data
        while len(self._images) > 64:
            self._images.popitem(last=False)
        return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
