"""Message bodies: reading JSON / multipart uploads, attachments, building and editing messages."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import mimetypes
import re
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web
from PIL import Image, UnidentifiedImageError

from .errors import entity_too_large, form_error, invalid_json
from .snowflakes import iso8601, utcnow
from .state import FLAG_EPHEMERAL, FLAG_LOADING, Blob, Channel, StoredMessage, User
from .validation import walk_components

if TYPE_CHECKING:
    from .server import FakeDiscord

MAX_FILES = 10

# Message types.
DEFAULT = 0
REPLY = 19
CHAT_INPUT_COMMAND = 20
CONTEXT_MENU_COMMAND = 23

_PIL_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}


@dataclasses.dataclass
class UploadedFile:
    field: str
    index: int
    filename: str
    data: bytes

    def summary(self) -> dict[str, Any]:
        return {"field": self.field, "filename": self.filename, "size": len(self.data)}


async def read_body(
    request: web.Request, *, upload_limit: int, record: Any = None
) -> tuple[dict[str, Any], list[UploadedFile]]:
    """Parse a JSON or ``multipart/form-data`` (``payload_json`` + ``files[n]``) request body.

    Enforces the per-file upload limit (413 / 40005) and the 10-files-per-message limit (50035).
    ``record`` (a CallRecord) gets the parsed JSON and a summary of the files.
    """
    files: list[UploadedFile] = []
    payload: dict[str, Any] = {}
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):  # nested multipart: not used by Discord
                continue
            name = part.name or ""
            if name == "payload_json":
                try:
                    payload = json.loads(await part.text())
                except ValueError as exc:
                    raise invalid_json() from exc
            elif part.filename is not None or name.startswith("files["):
                data = await part.read(decode=False)
                match = re.fullmatch(r"files\[(\d+)\]", name)
                index = int(match.group(1)) if match else len(files)
                files.append(
                    UploadedFile(name, index, part.filename or f"file{index}", bytes(data))
                )
            else:
                payload[name] = await part.text()
    else:
        raw = await request.read()
        if raw:
            try:
                payload = json.loads(raw)
            except ValueError as exc:
                raise invalid_json() from exc
    if record is not None:
        record.json = payload
        record.files = [f.summary() for f in files]
    limit = upload_limit
    if any(len(f.data) > limit for f in files):
        raise entity_too_large()
    if len(files) > MAX_FILES:
        raise form_error(["attachments"], "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    if not isinstance(payload, dict):
        raise form_error(["_"], "DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType")
    return payload, files


def sniff(filename: str, data: bytes) -> tuple[str | None, int | None, int | None]:
    """(content_type, width, height): images are read with Pillow, the rest by extension."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            width, height = img.size
        content_type = _PIL_TYPES.get(fmt) or mimetypes.guess_type(filename)[0]
        return content_type, width, height
    except (UnidentifiedImageError, OSError, ValueError):
        guessed = mimetypes.guess_type(filename)[0]
        if guessed and filename.endswith((".txt", ".md", ".json", ".csv")):
            guessed += "; charset=utf-8"
        return guessed, None, None


def clean_filename(filename: str) -> str:
    name = filename.replace(" ", "_")
    name = re.sub(r"[^\w.\-]", "", name)
    return name or "unknown"


def attachment_payload(fake: FakeDiscord, blob: Blob, **extra: Any) -> dict[str, Any]:
    content_type, width, height = sniff(blob.filename, blob.data)
    url = fake.cdn_url(blob)
    data: dict[str, Any] = {
        "id": str(blob.id),
        "filename": blob.filename,
        "size": len(blob.data),
        "url": url,
        "proxy_url": url,
        "flags": 0,
    }
    if content_type:
        data["content_type"] = content_type
    if width is not None:
        data["width"] = width
        data["height"] = height
    if blob.ephemeral:
        data["ephemeral"] = True
    data.update({k: v for k, v in extra.items() if v is not None})
    return data


def store_upload(
    fake: FakeDiscord,
    channel_id: int,
    filename: str,
    data: bytes,
    *,
    ephemeral: bool = False,
    description: str | None = None,
    title: str | None = None,
) -> dict[str, Any]:
    clean = clean_filename(filename)
    blob = Blob(
        id=fake.snowflakes.new(),
        channel_id=channel_id,
        filename=clean,
        data=data,
        content_type=None,
        ephemeral=ephemeral,
    )
    blob.content_type = sniff(clean, data)[0]
    fake.world.blobs[blob.id] = blob
    if title is None and clean != filename:
        title = filename.rsplit(".", 1)[0]
    return attachment_payload(fake, blob, description=description, title=title)


def resolve_attachments(
    fake: FakeDiscord,
    channel_id: int,
    payload: dict[str, Any],
    files: list[UploadedFile],
    existing: list[dict[str, Any]],
    *,
    ephemeral: bool,
) -> list[dict[str, Any]]:
    """Apply Discord's ``attachments`` semantics: keep listed existing ones, add uploads."""
    by_index = {f.index: f for f in files}
    used: set[int] = set()
    result: list[dict[str, Any]] = []
    wanted = payload.get("attachments")
    if wanted is None:
        result.extend(existing)
    else:
        existing_by_id = {a["id"]: a for a in existing}
        for i, entry in enumerate(wanted):
            ref = str(entry.get("id"))
            if ref in existing_by_id:
                kept = dict(existing_by_id[ref])
                if entry.get("description") is not None:
                    kept["description"] = entry["description"]
                result.append(kept)
                continue
            if ref.isdigit() and int(ref) in by_index:
                upload = by_index[int(ref)]
                used.add(upload.index)
                result.append(
                    store_upload(
                        fake,
                        channel_id,
                        entry.get("filename") or upload.filename,
                        upload.data,
                        ephemeral=ephemeral,
                        description=entry.get("description"),
                        title=entry.get("title"),
                    )
                )
                continue
            raise form_error(
                ["attachments", i], "ATTACHMENT_NOT_FOUND", "Attachment data not found"
            )
    for upload in files:
        if upload.index not in used:
            result.append(
                store_upload(fake, channel_id, upload.filename, upload.data, ephemeral=ephemeral)
            )
    return result


def _number_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    components = copy.deepcopy(components)
    next_id = 1
    for comp in walk_components(components):
        if "id" not in comp:
            comp["id"] = next_id
        next_id = max(next_id, int(comp["id"])) + 1
    return components


def _embeds(raw: list[dict[str, Any]], attachments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name = {a["filename"]: a for a in attachments}
    result = []
    for embed in raw:
        embed = copy.deepcopy(embed)
        embed.setdefault("type", "rich")
        embed.setdefault("content_scan_version", 0)
        for key in ("image", "thumbnail"):
            media = embed.get(key)
            if isinstance(media, dict):
                url = media.get("url", "")
                if url.startswith("attachment://"):
                    att = by_name.get(url.removeprefix("attachment://"))
                    if att is not None:
                        media.update(
                            {
                                "url": att["url"],
                                "proxy_url": att["proxy_url"],
                                "width": att.get("width", 0),
                                "height": att.get("height", 0),
                                "flags": 0,
                            }
                        )
        result.append(embed)
    return result


def _mentions(
    fake: FakeDiscord, content: str, allowed: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], list[str], bool]:
    parse = ["users", "roles", "everyone"] if allowed is None else allowed.get("parse", [])
    allowed_users = {str(u) for u in (allowed or {}).get("users", [])}
    allowed_roles = {str(r) for r in (allowed or {}).get("roles", [])}
    users: list[dict[str, Any]] = []
    for uid in dict.fromkeys(re.findall(r"<@!?(\d+)>", content)):
        if ("users" in parse or uid in allowed_users) and int(uid) in fake.world.users:
            users.append(fake.world.users[int(uid)].payload())
    roles = [
        rid
        for rid in dict.fromkeys(re.findall(r"<@&(\d+)>", content))
        if "roles" in parse or rid in allowed_roles
    ]
    everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
    return users, roles, everyone


def build_message(
    fake: FakeDiscord,
    *,
    channel: Channel,
    author: User,
    payload: dict[str, Any],
    files: list[UploadedFile],
    message_type: int = DEFAULT,
    extra_flags: int = 0,
    webhook: bool = False,
    interaction_metadata: dict[str, Any] | None = None,
    ephemeral_to: int | None = None,
    interaction_id: int | None = None,
) -> StoredMessage:
    """A new message from a create-message body (does not store it)."""
    message_id = fake.snowflakes.new()
    flags = int(payload.get("flags") or 0) | extra_flags
    if ephemeral_to is not None:
        flags |= FLAG_EPHEMERAL
    attachments = resolve_attachments(
        fake, channel.id, payload, files, [], ephemeral=ephemeral_to is not None
    )
    content = str(payload.get("content") or "")
    mentions, mention_roles, everyone = _mentions(fake, content, payload.get("allowed_mentions"))
    data: dict[str, Any] = {
        "id": str(message_id),
        "channel_id": str(channel.id),
        "type": message_type,
        "author": author.payload(),
        "content": content,
        "timestamp": iso8601(utcnow()),
        "edited_timestamp": None,
        "tts": bool(payload.get("tts", False)),
        "mention_everyone": everyone,
        "mentions": mentions,
        "mention_roles": mention_roles,
        "attachments": attachments,
        "embeds": _embeds(payload.get("embeds") or [], attachments),
        "pinned": False,
        "flags": flags,
        "components": _number_components(payload.get("components") or []),
        "sticker_items": [],
    }
    if payload.get("nonce") is not None:
        data["nonce"] = payload["nonce"]
    if payload.get("poll") is not None:
        data["poll"] = payload["poll"]
    if webhook:
        data["webhook_id"] = str(fake.application_id)
        data["application_id"] = str(fake.application_id)
    if interaction_metadata is not None:
        data["interaction_metadata"] = interaction_metadata
    reference = payload.get("message_reference")
    if reference:
        target = fake.world.messages.get(int(reference.get("message_id", 0) or 0))
        if target is None or target.deleted:
            if reference.get("fail_if_not_exists", True):
                raise form_error(
                    ["message_reference"],
                    "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                    "Unknown message",
                )
        else:
            data["type"] = REPLY if message_type == DEFAULT else message_type
            data["message_reference"] = {
                "type": 0,
                "message_id": str(target.id),
                "channel_id": str(target.channel_id),
            }
            if channel.guild_id is not None:
                data["message_reference"]["guild_id"] = str(channel.guild_id)
            data["referenced_message"] = target.payload()
    return StoredMessage(
        id=message_id,
        channel_id=channel.id,
        data=data,
        ephemeral_to=ephemeral_to,
        interaction_id=interaction_id,
    )


def apply_edit(
    fake: FakeDiscord,
    message: StoredMessage,
    payload: dict[str, Any],
    files: list[UploadedFile],
    *,
    mark_edited: bool = True,
) -> None:
    data = message.data
    if "content" in payload:
        data["content"] = str(payload["content"] or "")
        users, roles, everyone = _mentions(fake, data["content"], payload.get("allowed_mentions"))
        data["mentions"], data["mention_roles"], data["mention_everyone"] = users, roles, everyone
    if "attachments" in payload or files:
        data["attachments"] = resolve_attachments(
            fake,
            message.channel_id,
            payload,
            files,
            data["attachments"],
            ephemeral=message.ephemeral,
        )
    if "embeds" in payload:
        data["embeds"] = _embeds(payload["embeds"] or [], data["attachments"])
    if "components" in payload:
        data["components"] = _number_components(payload["components"] or [])
    was_loading = bool(data["flags"] & FLAG_LOADING)
    if payload.get("flags") is not None:
        # Ephemeral-ness is fixed at creation; the loading state ends with any edit.
        keep = data["flags"] & FLAG_EPHEMERAL
        data["flags"] = keep | (int(payload["flags"]) & ~FLAG_EPHEMERAL & ~FLAG_LOADING)
    data["flags"] &= ~FLAG_LOADING
    if mark_edited and not was_loading:
        data["edited_timestamp"] = iso8601(utcnow())
    if "poll" in payload:
        data["poll"] = payload["poll"]
