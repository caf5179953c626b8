"""`python -m bot quote MODEL ...`: the Buzz price and the exact imageGen step, offline."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from bot.catalog import CatalogError, FieldError, RequestOptions, build_request, parse_model
from bot.catalog.names import Operation
from bot.catalog.request import ImageRequest
from bot.catalog.sizes import parse_size
from bot.civitai.client import OrchestratorClient
from bot.config import load_settings

if TYPE_CHECKING:
    from bot.civitai.simulator import Simulator
from bot.civitai.errors import OrchestratorError

PLACEHOLDER_PROMPT = "a lighthouse on a rocky coast at dusk"
EXIT_INVALID = 2
QUALITIES = ("auto", "low", "medium", "high", "hd", "standard")


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("quote", help="price a request and print the step it would submit")
    p.add_argument(
        "model",
        metavar="MODEL",
        help="gpt-image-2, gpt-image-1.5, gpt-image-1, dall-e-3 or dall-e-2",
    )
    p.add_argument("--edit", action="store_true", help="an edit (sources shown as attachment://)")
    p.add_argument("--prompt", default=None, help="the prompt (default: a placeholder)")
    p.add_argument("--size", help="WIDTHxHEIGHT (gpt-image-2) or one of the model's sizes")
    # choices: every value some model takes; which ones this model takes, the catalog says.
    p.add_argument("--quality", type=str.lower, choices=QUALITIES, help="the model's quality level")
    p.add_argument("--quantity", type=int, help="images per request")
    p.add_argument(
        "--background",
        type=str.lower,
        choices=("auto", "transparent", "opaque"),
        help="gpt-image-1.5 and gpt-image-1",
    )
    p.add_argument("--style", type=str.lower, choices=("natural", "vivid"), help="dall-e-3 only")
    p.add_argument(
        "--fidelity", type=str.lower, choices=("low", "high"), help="gpt-image-1.5 edits only"
    )
    p.add_argument(
        "--format", type=str.lower, choices=("jpeg", "jpg", "png", "webp"), help="output format"
    )
    p.add_argument("--input-size", help="WIDTHxHEIGHT of the first source image (edit pricing)")
    p.add_argument("--mask", action="store_true", help="include a mask (edits)")
    p.add_argument("--whatif", action="store_true", help="also ask the orchestrator for its figure")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        request = _request(args)
    except CatalogError as exc:
        return _fail(args, exc.errors)
    out: dict[str, Any] = {
        "model": request.model.value,
        "operation": request.operation.value,
        "buzz": request.buzz,
        "step": request.step(),
        "warnings": list(request.warnings),
    }
    if args.whatif:
        try:
            out["whatif"] = asyncio.run(_whatif(args, request))
        except OrchestratorError as exc:
            print(f"whatif failed: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(out))
        return 0
    line = f"{request.buzz} Buzz"
    if "whatif" in out:
        line += f" (orchestrator whatif: {out['whatif']} Buzz)"
    print(line)
    print(json.dumps(out["step"], indent=2))
    for warning in request.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _request(args: argparse.Namespace) -> ImageRequest:
    model = parse_model(args.model)
    operation = Operation.EDIT if args.edit else Operation.CREATE
    input_size = None
    if args.input_size is not None:
        input_size = parse_size(args.input_size)
        if input_size is None or min(input_size) < 1:  # 0x0 would be priced, not refused
            raise CatalogError.single(
                "input-size", "input-size must be WIDTHxHEIGHT, e.g. 1024x1024"
            )
    images: tuple[str, ...] = ("attachment://image1.png",) if args.edit else ()
    options = RequestOptions(
        prompt=args.prompt if args.prompt is not None else PLACEHOLDER_PROMPT,
        size=args.size,
        quality=args.quality,
        quantity=args.quantity,
        background=args.background,
        style=args.style,
        fidelity=args.fidelity,
        format=args.format,
        images=images,
        mask="attachment://mask.png" if args.mask else None,
    )
    return build_request(model, operation, options, input_size=input_size)


def _fail(args: argparse.Namespace, errors: list[FieldError]) -> int:
    if args.json:
        print(json.dumps({"errors": [e.as_dict() for e in errors]}))
    else:
        for err in errors:
            print(f"error: {err.message}", file=sys.stderr)
    return EXIT_INVALID


async def _whatif(args: argparse.Namespace, request: ImageRequest) -> int:
    from bot.civitai.simulator import Simulator  # only --whatif needs aiohttp and Pillow

    settings = load_settings(args.config)
    simulator: Simulator | None = None
    base_url: str = settings.civitai.base_url
    token: SecretStr | str | None = settings.civitai.token
    if settings.simulated:
        simulator = Simulator(token=secrets.token_urlsafe(16))
        base_url, token = await simulator.start(), simulator.token
    client = OrchestratorClient(
        base_url,
        token,
        currencies=list(settings.civitai.currencies),
        timeout=settings.civitai.request_timeout_seconds,
        max_retries=settings.civitai.max_retries,
    )
    try:
        # A whatif claims its externalId upstream: never reuse a real job's id for one.
        template = client.template([request.step()], f"quote-{secrets.token_hex(8)}")
        workflow = await client.submit(template, whatif=True)
        return workflow.cost.total if workflow.cost else 0
    finally:
        await client.aclose()
        if simulator is not None:
            await simulator.stop()
