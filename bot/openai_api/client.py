"""The OpenAI lane's client: POST images/generations (JSON) and images/edits (multipart), streamed.

Runtime client: httpx directly, not the official `openai` SDK. The SDK is used only in a test, to
check that the built-in simulator speaks the same wire format as the real client. Why:
- Money and retries: the bot's rule is capped, jittered retries that honour Retry-After and say
  afterwards whether the request may have been acted on upstream (`Unavailable.maybe_accepted`),
  and a stream that breaks mid-way is retried. The SDK retries on its own schedule and cannot
  tell a connection that never opened from an answer that was lost; we would turn its retries
  off and wrap its exceptions anyway.
- Caps: every image is capped in bytes while it streams (a hostile or broken endpoint cannot
  make the bot buffer without end); the SDK buffers each event whole, then hands back strings.
- Compatible endpoints: OPENAI_BASE_URL may point at a server that ignores `stream`, answers a
  URL, or sends an `error` event mid-stream. Reading the wire ourselves handles all of these in
  one place, with typed errors (errors.py) that never carry the key.
- Footprint: httpx is already the bot's HTTP client (the Civitai lane, media); the SDK brings its
  own HTTP stack and model layer for two endpoints we fully describe here.

Retryable: 408/409/425/429 (except `insufficient_quota`)/5xx, timeouts, connection errors, and
broken streams. A retried stream starts again: partial images come again from index 0. A try
that streamed output (previews or an image) and then failed was run, and billed, upstream: such
tries are capped separately (`output_calls`, the lane counts them across rounds), so the operator
does not pay for one request again and again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from pydantic import SecretStr

from bot import net
from bot.metrics import ERROR, OK, RETRY, Metrics
from bot.openai_api.errors import (
    BadResponse,
    Blocked,
    InvalidRequest,
    OpenAIError,
    OperatorProblem,
    Unavailable,
)
from bot.openai_api.results import (
    ImageReader,
    ImagesResult,
    OnLost,
    OnPartial,
    StreamState,
    read_json_result,
)
from bot.openai_api.sse import EventTooLarge, SSEDecoder
from bot.openai_api.upstream import Retry, classify

log = logging.getLogger(__name__)

MAX_RETRY_AFTER = 120.0
# Room for an event's JSON fields around its base64 image.
EVENT_SLACK = 64 * 1024
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-*.]{4,}")


class UploadLike(Protocol):
    """An edit source or mask: bot/store/jobs.SourceImage fits, as does Upload."""

    @property
    def data(self) -> bytes: ...

    @property
    def mime(self) -> str: ...


@dataclass(frozen=True)
class Upload:
    data: bytes = field(repr=False)
    mime: str = "image/png"


class OpenAIImagesClient:
    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | str | None,
        *,
        timeout: float = 300.0,
        connect_timeout: float = 10.0,
        max_retries: int = 3,
        retry_max_delay: float = 30.0,
        max_image_bytes: int = 64 * 1024 * 1024,
        max_output_calls: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """`timeout` bounds each wait for bytes (a generation may take minutes before its first
        event, so it is long); `connect_timeout` bounds opening the connection."""
        secret = api_key.get_secret_value() if isinstance(api_key, SecretStr) else (api_key or "")
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.max_retries = max_retries
        self.retry_max_delay = retry_max_delay
        # Tries that streamed output then failed, at most, per request (each one was billed).
        self.max_output_calls = max_output_calls
        self.reader = ImageReader(max_image_bytes)
        self._sleep = sleep
        self._rng = rng or random.Random()
        # Requests actually sent, by kind ("generate", "edit").
        self.stats: Counter[str] = Counter()
        # Every attempt's outcome and latency, as the orchestrator client's
        # (imagebot_orchestrator_*): the upstream alerts then work on this lane too.
        self.metrics = metrics or Metrics()
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        key = "***" if self._secret else None
        shown = net.without_credentials(self.base_url)
        return f"OpenAIImagesClient(base_url={shown!r}, api_key={key})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> OpenAIImagesClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- API --------------------------------------------------------------------------------
    async def generate(
        self,
        body: dict[str, Any],
        *,
        on_partial: OnPartial | None = None,
        output_calls: int | None = None,
        on_lost: OnLost | None = None,
    ) -> ImagesResult:
        """POST images/generations with `body` (OpenAIRequest.fields) as JSON. `output_calls`:
        how many more tries may stream output and fail (default `max_output_calls`);
        `on_lost(why)`: told of each try that may have run upstream (billed) and is made
        again, before it is (the last try's outcome is the answer, or the error raised)."""
        return await self._call(
            "generate",
            "images/generations",
            lambda: {"json": body},
            body,
            on_partial,
            output_calls,
            on_lost,
        )

    async def edit(
        self,
        fields: dict[str, Any],
        images: Sequence[UploadLike],
        mask: UploadLike | None = None,
        *,
        on_partial: OnPartial | None = None,
        image_field: str = "image[]",
        output_calls: int | None = None,
        on_lost: OnLost | None = None,
    ) -> ImagesResult:
        """POST images/edits as multipart: `fields` as form fields, one `image_field` part per
        source (OpenAIRequest.image_field: `image[]`, or `image` for dall-e-2), `mask` a PNG."""
        if not images:
            raise ValueError("an edit needs at least one image")

        def build() -> dict[str, Any]:
            return {"data": _form(fields), "files": _files(images, mask, image_field)}

        return await self._call(
            "edit", "images/edits", build, fields, on_partial, output_calls, on_lost
        )

    # -- internals --------------------------------------------------------------------------
    async def _call(
        self,
        kind: str,
        path: str,
        build: Callable[[], dict[str, Any]],
        fields: dict[str, Any],
        on_partial: OnPartial | None,
        output_calls: int | None = None,
        on_lost: OnLost | None = None,
    ) -> ImagesResult:
        model = str(fields.get("model") or "") or None
        expected = _int(fields.get("n"), 1)
        allowed = self.max_output_calls if output_calls is None else output_calls
        attempt = produced = 0
        maybe_accepted = False  # could any attempt have been acted on upstream?
        untold = False  # ...one not told to on_lost (it streamed no output)?
        while True:
            started = time.monotonic()
            try:
                result = await self._attempt(kind, path, build(), model, expected, on_partial)
            except Retry as retry:
                problem, retry_after = self._redact(retry.problem), retry.retry_after
                accepted = retry.maybe_accepted  # this try's: it may have run upstream
                maybe_accepted = maybe_accepted or accepted
                produced += retry.produced
                billed, partial = retry.produced, retry.partial
            except (Blocked, InvalidRequest):
                # The endpoint did its job: the member's prompt or options were refused.
                self._measure(kind, OK, started)
                raise
            except BaseException:
                self._measure(kind, ERROR, started)
                raise
            else:
                self._measure(kind, OK, started)
                return result
            last = attempt >= self.max_retries or bool(produced and produced >= allowed)
            self._measure(kind, ERROR if last else RETRY, started)
            if last and partial is not None:
                # Some of the images came before the last try broke: made and paid for upstream,
                # they are delivered (and charged per image) rather than thrown away.
                log.warning("%s; keeping the %d image(s) that came", problem, len(partial.images))
                return partial
            if last:
                raise Unavailable(
                    f"{problem}; gave up after {attempt + 1} tries",
                    maybe_accepted=maybe_accepted,
                    produced=produced,
                    untold=untold or accepted,
                )
            if billed and on_lost is not None:
                # Told now, not with the answer: a cancel or a restart while retrying would
                # lose it, and the operator pays for it upstream all the same.
                await on_lost(problem)
            else:
                untold = untold or accepted
            delay = self._backoff(attempt, retry_after)
            log.warning("%s; retrying in %.1fs (try %d)", problem, delay, attempt + 2)
            await self._sleep(delay)
            attempt += 1

    def _measure(self, kind: str, outcome: str, started: float) -> None:
        self.metrics.orchestrator_attempt(kind, outcome, time.monotonic() - started)

    async def _attempt(
        self,
        kind: str,
        path: str,
        request: dict[str, Any],
        model: str | None,
        expected: int,
        on_partial: OnPartial | None,
    ) -> ImagesResult:
        self.stats[kind] += 1
        headers = {"Accept": "text/event-stream, application/json"}
        try:
            async with self._http.stream("POST", path, headers=headers, **request) as response:
                if response.status_code >= 400:
                    text = await _error_text(response)
                    raise classify(
                        response.status_code, text, response.headers, model, self._redact
                    )
                if response.status_code >= 300:  # redirects are not followed: a wrong base URL
                    raise OperatorProblem(
                        f"the endpoint redirected ({response.status_code}): check OPENAI_BASE_URL",
                        status=response.status_code,
                    )
                content_type = response.headers.get("content-type", "")
                if "text/event-stream" in content_type:
                    return await self._read_stream(kind, response, model, expected, on_partial)
                try:
                    return await self._read_json(kind, response, model, expected)
                except (httpx.TransportError, httpx.DecodingError) as exc:
                    # A 200 comes once the image is made: its body lost midway is an image
                    # made, and billed, upstream, as a stream that broke after output is.
                    lost = Retry(f"{kind}: lost the endpoint's answer ({type(exc).__name__})", True)
                    lost.produced = True
                    raise lost from None
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Retry(
                f"{kind}: cannot reach the endpoint ({type(exc).__name__})", False
            ) from None
        except (httpx.WriteError, httpx.WriteTimeout) as exc:
            # The request never arrived whole, so the endpoint cannot have acted on it.
            raise Retry(
                f"{kind}: could not send the request ({type(exc).__name__})", False
            ) from None
        except httpx.TimeoutException:
            raise Retry(f"{kind}: the endpoint did not answer in time", True) from None
        # DecodingError: a body whose gzip/deflate is broken (not a TransportError).
        except (httpx.TransportError, httpx.DecodingError) as exc:
            raise Retry(
                f"{kind}: lost the endpoint's answer ({type(exc).__name__})", True
            ) from None

    async def _read_stream(
        self,
        kind: str,
        response: httpx.Response,
        model: str | None,
        expected: int,
        on_partial: OnPartial | None,
    ) -> ImagesResult:
        state = StreamState(self.reader, expected, on_partial)
        try:
            return await self._read_events(kind, response, model, state)
        except Retry as retry:
            # Previews or a final image came: the try ran (and was billed) upstream.
            retry.produced = bool(state.partials or state.images or state.unusable)
            # Acted on, whatever the error says (a rate limit told mid-stream): billed.
            retry.maybe_accepted = retry.maybe_accepted or retry.produced
            if state.images:
                retry.partial = state.result()
            raise
        except OpenAIError as exc:
            exc.streamed_output = bool(state.partials or state.images or state.unusable)
            raise

    async def _read_events(
        self, kind: str, response: httpx.Response, model: str | None, state: StreamState
    ) -> ImagesResult:
        decoder = SSEDecoder(self.reader.max_encoded + EVENT_SLACK)
        expected = state.expected
        try:
            async for chunk in response.aiter_bytes():
                for event in decoder.feed(chunk):
                    await state.handle(event.event, event.data)
                    self._raise_stream_error(state, model)
                    if state.done or state.complete:
                        # What follows in the same chunk is read no more than a later chunk
                        # would be: a trailing error must not discard images made and billed.
                        break
                if state.done or state.complete:
                    break
            else:
                for event in decoder.close():
                    await state.handle(event.event, event.data)
                    self._raise_stream_error(state, model)
                    if state.done or state.complete:
                        break
        except EventTooLarge as exc:
            raise BadResponse(str(exc)) from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            if not state.complete:  # a stream that broke before every image arrived
                raise Retry(
                    f"{kind}: the stream broke after {state.events} events ({type(exc).__name__})",
                    True,
                ) from None
        if not state.images and state.unusable:  # made, and billed: not to be asked again
            raise BadResponse(state.unusable[0])
        if not state.images:
            raise Retry(f"{kind}: the stream ended without a completed image", True)
        if not state.complete:
            log.warning(
                "%s: the stream ended with %d of %d images", kind, len(state.images), expected
            )
        return state.result()

    def _raise_stream_error(self, state: StreamState, model: str | None) -> None:
        if state.errors:
            raise classify(None, state.errors[-1], httpx.Headers(), model, self._redact)

    async def _read_json(
        self, kind: str, response: httpx.Response, model: str | None, expected: int
    ) -> ImagesResult:
        cap = expected * (self.reader.max_encoded + EVENT_SLACK) + EVENT_SLACK
        body, over = await net.read_capped(response.aiter_bytes(), cap)
        if over:
            raise BadResponse(f"{kind}: the answer is over {cap:,} bytes")
        result = read_json_result(body, self.reader)
        if isinstance(result, dict):  # a 200 that carries an error object
            raise classify(None, result, response.headers, model, self._redact)
        return result

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        return net.backoff(
            attempt,
            retry_after,
            max_delay=self.retry_max_delay,
            max_retry_after=MAX_RETRY_AFTER,
            rng=self._rng,
        )

    def _redact(self, text: str) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        return _KEY_LIKE.sub("sk-***", text)


def _int(value: object, default: int) -> int:
    try:
        return int(value) if value is not None else default  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


def _form(fields: dict[str, Any]) -> dict[str, str]:
    """Form fields as the SDK sends them: booleans as true/false, numbers as text."""
    out = {}
    for key, value in fields.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


def _files(
    images: Sequence[UploadLike], mask: UploadLike | None, image_field: str
) -> list[tuple[str, tuple[str, bytes, str]]]:
    parts = []
    for number, image in enumerate(images, 1):
        name = f"image-{number}.{_EXTENSIONS.get(image.mime, 'png')}"
        parts.append((image_field, (name, image.data, image.mime)))
    if mask is not None:
        parts.append(("mask", ("mask.png", mask.data, mask.mime or "image/png")))
    return parts


async def _error_text(response: httpx.Response) -> str:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > 64 * 1024:
            break
    return bytes(data[:4000]).decode("utf-8", "replace")
