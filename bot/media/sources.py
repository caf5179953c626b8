"""Edit sources and masks as they are sent: re-encoded to the byte budget, in the shape and
format each model needs (the rules come from the catalog's capabilities)."""

from __future__ import annotations

from PIL import Image

from bot.catalog.capabilities import MASKABLE, Capability, capability, names
from bot.catalog.names import Model, Operation
from bot.media.attachments import require_square
from bot.media.decode import decode, has_transparency
from bot.media.encode import MIME, Encoded, encode_capped, fit_to_budget, resized
from bot.media.limits import MediaError, MediaLimits, human_size
from bot.media.originals import kept_original
from bot.store.jobs import SourceImage

SOURCE_QUALITIES = (90, 80, 70)


def prepare_sources(
    images: list[Image.Image], model: Model, limits: MediaLimits, *, masked: bool = False
) -> list[SourceImage]:
    """Re-encode edit sources to fit the byte budget; dall-e-2 gets one square PNG.

    `masked`: a mask goes with the first image. OpenAI wants the image and its mask in the same
    format, and a mask is a PNG, so the first image stays PNG (scaled down if it must be).
    """
    can = check_sources(model, len(images))
    if can.square_source:
        return [_square_source(images[0], model, limits, can.source_max_bytes)]
    return [
        _source(image, limits.max_source_bytes, png_only=masked and index == 0)
        for index, image in enumerate(images)
    ]


def check_sources(model: Model, count: int) -> Capability:
    """The model's edit capability, if it takes `count` images (before anything is decoded)."""
    if not count:
        raise MediaError("image", "an edit needs an image")
    can = capability(model, Operation.EDIT)
    if can is None:
        raise MediaError("image", f"{model} cannot edit images: use gpt-image-2 or gpt-image-1")
    if can.square_source and count > 1:
        raise MediaError(
            "image2",
            f"{model} edits take one image: leave out image2 and later, or use gpt-image-1",
        )
    return can


def prepare_source(
    data: bytes, option: str, model: Model, limits: MediaLimits, *, png_only: bool = False
) -> SourceImage:
    """One attached file as it will be sent: as it is when it fits and the model takes it
    (bot.media.originals), else decoded and re-encoded like prepare_sources does."""
    can = check_sources(model, 1)
    if can.square_source:
        return _square_source(decode(data, option, limits), model, limits, can.source_max_bytes)
    kept = kept_original(data, option, limits, png_only=png_only)
    if kept is not None:
        return kept
    return _source(decode(data, option, limits), limits.max_source_bytes, png_only=png_only)


def _square_source(
    image: Image.Image, model: Model, limits: MediaLimits, cap: int | None
) -> SourceImage:
    """dall-e-2: one square RGBA PNG under its own byte cap."""
    require_square(image.width, image.height, model)
    # OpenAI refuses an RGB PNG for dall-e-2 ("format must be in ['RGBA', 'LA', 'L']").
    rgba = image.convert("RGBA")
    budget = min(limits.max_source_bytes, cap or limits.max_source_bytes)
    return _source_image("image", fit_to_budget(rgba, budget, [("PNG", None)]))


def _source(image: Image.Image, limit: int, *, png_only: bool) -> SourceImage:
    transparent = has_transparency(image)
    image = image.convert("RGBA" if transparent else "RGB")
    steps: list[tuple[str, int | None]] = [("PNG", None)]
    if not (transparent or png_only):
        steps += [("JPEG", quality) for quality in SOURCE_QUALITIES]
    return _source_image("image", fit_to_budget(image, limit, steps))


def _source_image(role: str, encoded: Encoded) -> SourceImage:
    return SourceImage(
        role=role,
        mime=MIME[encoded.fmt],
        width=encoded.width,
        height=encoded.height,
        data=encoded.data,
    )


def prepare_mask(
    mask: Image.Image,
    first: Image.Image | SourceImage,
    model: Model,
    *,
    limits: MediaLimits | None = None,
) -> SourceImage:
    """An RGBA PNG mask the size of the first source, transparent where the image may change.

    Pass the prepared first source (a SourceImage) when you have it: if it was scaled down to fit
    the byte budget, the mask is scaled to match what is actually sent.
    """
    can = capability(model, Operation.EDIT)
    if can is None or not can.mask:
        raise MediaError("mask", f"{model} does not take a mask: use {names(MASKABLE)}")
    size = _mask_size(mask.size, (first.width, first.height))
    if has_transparency(mask):
        rgba = resized(mask.convert("RGBA"), size)
        if rgba.getchannel("A").histogram()[0] == 0:  # the API edits only where alpha is 0
            raise MediaError(
                "mask",
                "the mask marks nothing to change: no pixel of it is fully transparent; make "
                "the area to change fully transparent (or paint it white on black, without "
                "transparency)",
            )
    else:
        rgba = _mask_from_drawing(mask, size)
    budget = (limits or MediaLimits()).max_source_bytes
    if can.source_max_bytes is not None:
        budget = min(budget, can.source_max_bytes)
    data = _encode_mask(rgba, budget)
    return SourceImage(role="mask", mime="image/png", width=size[0], height=size[1], data=data)


def _mask_size(mask: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    (mw, mh), (tw, th) = mask, target
    # Same shape within 1%: |mw/mh - tw/th| <= 1% of tw/th, without dividing.
    if mask == target or abs(mw * th - tw * mh) <= 0.01 * tw * mh:
        return target
    raise MediaError(
        "mask",
        f"the mask is {mw}x{mh} but the image is {tw}x{th}: "
        "make the mask the same size (or at least the same shape) as the image",
    )


def _mask_from_drawing(drawing: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A drawing without transparency: its light pixels mark the area to change."""
    # Threshold after scaling, so the edge stays sharp instead of half-transparent.
    luma = resized(drawing.convert("L"), size)
    alpha = luma.point(lambda v: 0 if v >= 128 else 255)
    if alpha.getextrema() == (255, 255):
        raise MediaError(
            "mask",
            "the mask marks nothing to change: paint the area to change white "
            "(or make it transparent)",
        )
    rgba = Image.new("RGBA", size, (0, 0, 0, 255))
    rgba.putalpha(alpha)
    return rgba


def _encode_mask(rgba: Image.Image, budget: int) -> bytes:
    # The API reads only the alpha channel, so over budget the colours go first, then soft edges;
    # scaling is not an option since the mask must match the image's size.
    for simplify in (None, _alpha_only, _hard_edges):
        candidate = rgba if simplify is None else simplify(rgba)
        data = encode_capped(candidate, "PNG", None, budget)
        if data is not None:
            return data
    raise MediaError(
        "mask", f"the mask is too detailed to send in {human_size(budget)}: use a simpler mask"
    )


def _alpha_only(rgba: Image.Image) -> Image.Image:
    flat = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    flat.putalpha(rgba.getchannel("A"))
    return flat


def _hard_edges(rgba: Image.Image) -> Image.Image:
    hard = _alpha_only(rgba)
    hard.putalpha(rgba.getchannel("A").point(lambda v: 0 if v < 128 else 255))
    return hard
