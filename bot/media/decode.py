"""Decoding untrusted image bytes: only PNG, JPEG, WebP and GIF decoders run, pixels are capped
before any pixel memory is allocated, and a file is checked to be an image before it is used."""

from __future__ import annotations

import io
import re

from PIL import Image, ImageChops, ImageCms, ImageFile, ImageOps

from bot.media.limits import ALLOWED_TYPES, KINDS, MediaError, MediaLimits, check_pixels, megapixels

# Pillow only tries these decoders, whatever the file claims to be (no PSD, TIFF, EPS... parsers
# run on untrusted bytes). A phone's multi-picture JPEG opens as "MPO" through the JPEG decoder.
DECODERS = ("PNG", "JPEG", "WEBP", "GIF")
DECODED_FORMATS = frozenset({*DECODERS, "MPO"})
# Modes an embedded colour profile is applied in (others keep their pixels as they are).
PROFILED_MODES = frozenset({"RGB", "RGBA", "CMYK", "L"})
ORIENTATION = 0x0112
# Grey of 2 or 4 bits a pixel, as Pillow widens it to 8 (4 bits: 1 becomes 17).
WIDENED_GREY = {"L;2": 85, "L;4": 17}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A 16-bit value's high byte: 16-bit grey scaled down to 8 bits, this many rows at a time.
HIGH_BYTE = [v >> 8 for v in range(65536)]
GREY_STRIP = 256
# A progressive JPEG is decoded over every pixel once per scan: a 270 KB 6000x6000 file of
# 1,000 scans takes ~30 s of the shared image pool, holding up every member's images. Real
# photos have about 10.
MAX_JPEG_SCANS = 100
# A real JPEG has a few segments per scan; walking more, one Python step each, is a hostile file.
MAX_JPEG_SEGMENTS = 20 * MAX_JPEG_SCANS
# Pillow reads a PNG's chunks one Python step each (~3 µs): 25 MB of empty chunks took seconds
# per file. Encoders write a few, and the pixels in IDAT chunks of 8 KB or more (one per row
# at most): thousands in a big file.
MAX_PNG_CHUNKS = 20_000
# A marker: 0xFF then anything but a stuffed 0x00, fill (0xFF) or a restart marker (RST0-7),
# found in C (entropy-coded data is skipped without a Python step per byte).
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")


def decode(data: bytes, option: str, limits: MediaLimits) -> Image.Image:
    """The first frame, upright, loaded, in RGB or RGBA; refuses bombs before decoding pixels."""
    not_image = MediaError(option, f"{option} is not {KINDS} image (or the file is damaged)")
    limit = megapixels(limits.max_pixels)
    too_big = MediaError(option, f"{option} has too many pixels; the limit is {limit} megapixels")
    check_scans(data, option)
    check_chunks(data, option)
    try:
        image = Image.open(io.BytesIO(data), formats=DECODERS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own bomb check (and its warning, where a filter makes it an error).
        raise too_big from None
    except Exception:  # Pillow's plugins raise many types on malformed input
        raise not_image from None
    with image:
        if image.format not in DECODED_FORMATS:
            raise not_image
        # Only the header has been read so far: refuse before any pixel memory is allocated.
        check_pixels(option, image.width, image.height, limits.max_pixels)
        raw = raw_mode(image)  # read from the tile, which the load clears
        try:
            image.load()  # the first frame: an opened animation starts there
            frame = keyed(data, image, raw)
            upright = ImageOps.exif_transpose(frame) if orientation(image) != 1 else frame
            ready = rgb_or_rgba(in_srgb(upright))
            # The opened image is closed when this block ends: a copy only if nothing was
            # converted (a copy besides a conversion was one more full image held at once).
            return ready.copy() if ready is image else ready
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise too_big from None
        except Exception:
            raise not_image from None


def raw_mode(image: Image.Image) -> str:
    """How the file stores its pixels ("RGB;16B", "L;4"...), before they are loaded."""
    tiles = image.tile if isinstance(image, ImageFile.ImageFile) else []
    return tiles[0].args if tiles and isinstance(tiles[0].args, str) else ""


def keyed(data: bytes, image: Image.Image, raw: str) -> Image.Image:
    """A PNG's transparent colour (tRNS) of RGB or grey made an alpha channel, before anything
    reads the pixels: Pillow keeps it only as a key in the image's info, which the RGB path
    and a colour profile's conversion drop, and in the file's own bit depth (16-bit RGB, grey
    of 2 or 4 bits), which no pixel it decoded to 8 bits then matches."""
    key = image.info.get("transparency")
    if image.format != "PNG" or key is None or image.mode not in ("L", "RGB"):
        return image
    if raw == "RGB;16B" and isinstance(key, tuple):
        return keyed_alpha(data, image, key)
    if raw in WIDENED_GREY and isinstance(key, int):
        image.info["transparency"] = key * WIDENED_GREY[raw]
    return image.convert("RGBA")


def keyed_alpha(data: bytes, image: Image.Image, key: tuple[int, int, int]) -> Image.Image:
    """A 16-bit RGB PNG's transparent colour as an alpha channel. Pillow keeps only each
    sample's high byte but the key in 16 bits, so no pixel matched it and the transparency was
    lost; matching the high bytes alone would clear pixels that only look like the key. The
    low bytes come from decoding the same data again as little-endian (its first byte taken
    for each sample is then the low one)."""
    with Image.open(io.BytesIO(data), formats=("PNG",)) as low:
        low.tile = [tile._replace(args="RGB;16L") for tile in low.tile]
        low.load()
        matches = [
            plane.point([255 if v == wanted else 0 for v in range(256)])
            for planes, shift in ((image.split(), 8), (low.split(), 0))
            for plane, sample in zip(planes, key, strict=True)
            for wanted in [(sample >> shift) & 0xFF]
        ]
    keyed = matches[0]
    for match in matches[1:]:
        keyed = ImageChops.darker(keyed, match)  # all six bytes match: the key
    out = image.copy()
    out.info.pop("transparency", None)
    out.putalpha(ImageChops.invert(keyed))
    return out


def check_scans(data: bytes, option: str) -> None:
    """Refuse a JPEG of more than MAX_JPEG_SCANS scans before a decoder spends minutes on it,
    or of more than MAX_JPEG_SEGMENTS segments before its first scan, which Pillow reads one
    Python step each (25 MB of empty comments: 7 s)."""
    if not data.startswith(b"\xff\xd8"):
        return
    if jpeg_segments_before_scan(data) > MAX_JPEG_SEGMENTS:
        raise MediaError(
            option,
            f"{option} is a JPEG of more than {MAX_JPEG_SEGMENTS:,} segments before its "
            "picture, which would take long to read: save it again as an ordinary JPEG, or as "
            "a PNG",
        )
    if jpeg_scans(data) > MAX_JPEG_SCANS:
        raise MediaError(
            option,
            f"{option} is a JPEG of more than {MAX_JPEG_SCANS} scans, which would take minutes "
            "to read: save it again as an ordinary JPEG, or as a PNG",
        )


def jpeg_segments_before_scan(data: bytes) -> int:
    """The segments before a JPEG's first scan (its headers, metadata, comments), counted to
    just past MAX_JPEG_SEGMENTS. No pixels are decoded."""
    segments, at = 0, 2
    while segments <= MAX_JPEG_SEGMENTS:
        found = _JPEG_MARKER.search(data, at)
        if found is None or found[0][1] in (0xDA, 0xD9):  # the first scan, or the end
            return segments
        at = found.end()
        segments += 1
        if found[0][1] not in (0x01, 0xD8):  # TEM, SOI: no length follows
            at += int.from_bytes(data[at : at + 2], "big")
    return segments


def jpeg_scans(data: bytes) -> int:
    """The scans (SOS markers) of a JPEG's first picture, the one decoded, counted to just past
    MAX_JPEG_SCANS: what comes after its end (a phone's second MPO picture, a motion photo's
    video) and inside metadata (an EXIF thumbnail) is not counted. No pixels are decoded."""
    scans = segments = 0
    at = 2
    while scans <= MAX_JPEG_SCANS:
        found = _JPEG_MARKER.search(data, at)
        if found is None or found[0][1] == 0xD9:  # EOI: the first picture ends here
            return scans
        at = found.end()
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            # No real photo gets here: every FF DA left counts (metadata too, an over-count).
            return scans + data.count(b"\xff\xda", at)
        if found[0][1] in (0x01, 0xD8):  # TEM, SOI: no length follows
            continue
        scans += found[0][1] == 0xDA
        # A segment: skip its body (an APPn block, a table, a scan's header).
        at += int.from_bytes(data[at : at + 2], "big")
    return scans


def check_chunks(data: bytes, option: str) -> None:
    """Refuse a PNG of more than MAX_PNG_CHUNKS chunks before Pillow walks them all."""
    if data.startswith(PNG_SIGNATURE) and png_chunks(data) > MAX_PNG_CHUNKS:
        raise MediaError(
            option,
            f"{option} is a PNG of more than {MAX_PNG_CHUNKS:,} chunks, which would take long "
            "to read: save it again as an ordinary PNG",
        )


def png_chunks(data: bytes) -> int:
    """A PNG's chunks up to IEND (or the end of the data), counted to just past
    MAX_PNG_CHUNKS. No pixels are decoded."""
    chunks, at = 0, len(PNG_SIGNATURE)
    while at + 8 <= len(data) and chunks <= MAX_PNG_CHUNKS:
        chunks += 1
        if data[at + 4 : at + 8] == b"IEND":
            break
        at += 12 + int.from_bytes(data[at : at + 4], "big")  # length, type, body, CRC
    return chunks


def orientation(image: Image.Image) -> int:
    """The EXIF orientation; 1 (as stored) when there is none or the EXIF block is damaged,
    which is how Discord and every viewer then show the image too (not a reason to refuse)."""
    try:
        value = image.getexif().get(ORIENTATION, 1)
    except Exception:  # Pillow raises SyntaxError, struct.error... on a damaged EXIF block
        return 1
    return value if isinstance(value, int) else 1


def in_srgb(image: Image.Image) -> Image.Image:
    """The pixels as sRGB. A re-encoded source loses its embedded colour profile (a phone's
    Display P3, a print CMYK), and a model reads bare pixels as sRGB: so the profile is applied
    now, or the edit starts from colours the member never saw."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in PROFILED_MODES or is_srgb(icc):
        return image  # already what a model assumes: no work
    try:
        embedded = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(
            image, embedded, ImageCms.createProfile("sRGB"), outputMode=out
        )
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image  # a damaged or unusual profile: the pixels as they are, as before
    assert converted is not None  # not in place
    converted.info.pop("icc_profile", None)  # the pixels are sRGB now: not to be re-tagged
    return converted


def is_srgb(icc: bytes) -> bool:
    """Whether an embedded profile is sRGB (or cannot be read: the pixels go as they are)."""
    try:
        embedded = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return "srgb" in ImageCms.getProfileDescription(embedded).lower()
    except (ImageCms.PyCMSError, OSError, ValueError):
        return True


def rgb_or_rgba(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I"):
        image = grey_8_bit(image)
    if image.mode in ("RGB", "RGBA"):
        return image
    return image.convert("RGBA" if image.has_transparency_data else "RGB")


def grey_8_bit(image: Image.Image) -> Image.Image:
    """16-bit grey scaled to 8 bits ("L", or "LA" with its tRNS value as alpha 0). Pillow's
    convert clips it to white instead; and a strip at a time: a whole 32-bit copy (and its
    pieces) of a 40-megapixel file of a few KB took 800 MB."""
    key = image.info.get("transparency")
    keyed = isinstance(key, int)
    grey = Image.new("L", image.size)
    alpha = Image.new("L", image.size, 255) if keyed else None
    transparent = [0 if v == key else 255 for v in range(65536)] if keyed else []
    for top in range(0, image.height, GREY_STRIP):
        box = (0, top, image.width, min(image.height, top + GREY_STRIP))
        wide = image.crop(box).convert("I")
        grey.paste(wide.point(HIGH_BYTE, "L"), box)
        if alpha is not None:
            # Its transparent pixels are those of one 16-bit value: an alpha channel now, as
            # the 8-bit grey it becomes may be an opaque pixel's too.
            alpha.paste(wide.point(transparent, "L"), box)
    if alpha is not None:
        grey.putalpha(alpha)
    return grey


def has_transparency(image: Image.Image) -> bool:
    """Real transparency: some pixel is not fully opaque (an all-255 alpha channel is not)."""
    if not image.has_transparency_data:
        return False
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    low, _ = rgba.getchannel("A").getextrema()  # one band: two ints
    return int(low) < 255  # type: ignore[arg-type]


def probe_image(data: bytes) -> tuple[str, int, int]:
    """(MIME type, width, height) of an image file whose structure checks out; ValueError for
    anything else (an error page, a truncated or damaged file). No pixels are decoded."""
    mime = sniff_mime(data)
    if mime not in ALLOWED_TYPES:
        raise ValueError(f"not an image: starts with {data[:16]!r}")
    try:
        with Image.open(io.BytesIO(data), formats=DECODERS) as image:
            size = image.size
            image.verify()  # chunk checksums and structure, without decoding pixels
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ValueError(f"a damaged {mime} ({type(exc).__name__})") from None
    return mime, size[0], size[1]


def check_decodes(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """probe_image, and then every pixel decoded (a cut-short JPEG passes verify()), for an
    image of at most `max_pixels`: ValueError otherwise. For results that arrive whole in an
    answer (the OpenAI lane's), which nothing else will look at before they are posted."""
    mime, width, height = probe_image(data)
    if width * height > max_pixels:
        raise ValueError(f"{width}x{height} is over the {max_pixels:,}-pixel limit")
    try:
        with Image.open(io.BytesIO(data), formats=DECODERS) as image:
            image.load()
    except Exception as exc:  # Pillow raises many types on malformed input
        raise ValueError(f"a damaged {mime} ({type(exc).__name__}: {exc})") from None
    return mime, width, height


def sniff_mime(data: bytes) -> str:
    """The image type from its magic bytes, whatever a filename or header says."""
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
