"""Gateway v10 websocket: HELLO, IDENTIFY -> READY + GUILD_CREATE, HEARTBEAT, RESUME, dispatch.

Transport compression follows the ``compress`` query parameter the client asked for:
``zlib-stream`` (one zlib context per connection, every message ends with the Z_SYNC_FLUSH
suffix ``00 00 ff ff``; what discord.py 2.7 uses without a zstd module) or ``zstd-stream``
(what discord.py 2.7 asks for when ``zstandard``/``compression.zstd`` is importable).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import secrets
import zlib
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from .errors import DriverError

if TYPE_CHECKING:
    from .server import FakeDiscord

try:  # pragma: no cover - depends on the environment
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None

log = logging.getLogger(__name__)

# Opcodes.
DISPATCH = 0
HEARTBEAT = 1
IDENTIFY = 2
PRESENCE_UPDATE = 3
VOICE_STATE_UPDATE = 4
RESUME = 6
RECONNECT = 7
REQUEST_GUILD_MEMBERS = 8
INVALID_SESSION = 9
HELLO = 10
HEARTBEAT_ACK = 11

# Intents.
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT


class _Compressor:
    def __init__(self, kind: str | None) -> None:
        self.kind = kind
        self._zlib = zlib.compressobj() if kind == "zlib-stream" else None
        self._zstd: Any = None
        if kind == "zstd-stream":
            if zstandard is None:
                raise ValueError("zstd-stream requested but zstandard is not installed")
            self._zstd = zstandard.ZstdCompressor().compressobj()

    def pack(self, text: str) -> str | bytes:
        raw = text.encode()
        if self._zlib is not None:
            return self._zlib.compress(raw) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
        if self._zstd is not None:
            return self._zstd.compress(raw) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return text


@dataclasses.dataclass
class GatewaySession:
    id: str
    intents: int
    shard: list[int] | None
    seq: int = 0
    events: collections.deque[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=2000)
    )
    connection: GatewayConnection | None = None


class GatewayConnection:
    def __init__(self, ws: web.WebSocketResponse, compressor: _Compressor) -> None:
        self.ws = ws
        self.compressor = compressor
        self.session: GatewaySession | None = None
        self._lock = asyncio.Lock()

    @property
    def open(self) -> bool:
        return not self.ws.closed

    async def send(self, payload: dict[str, Any]) -> None:
        async with self._lock:
            if self.ws.closed:
                return
            packed = self.compressor.pack(json.dumps(payload, separators=(",", ":")))
            with contextlib.suppress(ConnectionResetError):
                if isinstance(packed, bytes):
                    await self.ws.send_bytes(packed)
                else:
                    await self.ws.send_str(packed)

    async def close(self, code: int, message: str) -> None:
        await self.ws.close(code=code, message=message.encode())


class Gateway:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.sessions: dict[str, GatewaySession] = {}
        self.current: GatewaySession | None = None
        self.connections: set[GatewayConnection] = set()
        self.identifies = 0
        #: Every payload the bot sent, and the ``compress`` value of every connection.
        self.received: list[dict[str, Any]] = []
        self.compressions: list[str | None] = []
        #: While set, the gateway is out of reach: connections are refused with a 503.
        self.down = False

    # ---- websocket endpoint --------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(status=400, text="websocket expected")
        if self.down:
            return web.Response(status=503, text="gateway unavailable")
        compress = request.query.get("compress")
        self.compressions.append(compress)
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        try:
            compressor = _Compressor(compress)
        except ValueError:
            await ws.close(code=4000, message=b"Unknown compression")
            return ws
        if request.query.get("encoding", "json") != "json":
            await ws.close(code=4002, message=b"Decode error (only json is supported)")
            return ws
        conn = GatewayConnection(ws, compressor)
        self.connections.add(conn)
        try:
            await conn.send(
                {
                    "op": HELLO,
                    "d": {"heartbeat_interval": self.fake.heartbeat_interval_ms},
                    "s": None,
                    "t": None,
                }
            )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    raw = msg.data
                elif msg.type == WSMsgType.BINARY:
                    raw = msg.data.decode()
                else:
                    break
                try:
                    payload = json.loads(raw)
                except ValueError:
                    await conn.close(4002, "Decode error")
                    break
                self.received.append(payload)
                await self._on_payload(conn, payload)
        finally:
            self.connections.discard(conn)
            if conn.session is not None and conn.session.connection is conn:
                conn.session.connection = None
            self.fake.notify()
        return ws

    async def _on_payload(self, conn: GatewayConnection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        data = payload.get("d")
        if op == HEARTBEAT:
            await conn.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            await self._identify(conn, data or {})
        elif op == RESUME:
            await self._resume(conn, data or {})
        elif conn.session is None:
            await conn.close(4003, "Not authenticated.")
        elif op == REQUEST_GUILD_MEMBERS:
            await self._request_members(conn, data or {})
        elif op in (PRESENCE_UPDATE, VOICE_STATE_UPDATE):
            pass
        else:
            await conn.close(4001, "Unknown opcode.")

    def _token_ok(self, token: Any) -> bool:
        return isinstance(token, str) and token.removeprefix("Bot ") == self.fake.bot_token

    async def _identify(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        fake = self.fake
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        if not self._token_ok(data.get("token")):
            await conn.close(4004, "Authentication failed.")
            return
        intents = int(data.get("intents") or 0)
        if intents & PRIVILEGED_INTENTS & ~fake.enabled_privileged_intents:
            await conn.close(4014, "Disallowed intent(s).")
            return
        session = GatewaySession(id=secrets.token_hex(16), intents=intents, shard=data.get("shard"))
        self.sessions[session.id] = session
        session.connection = conn
        conn.session = session
        self.current = session
        self.identifies += 1
        user = fake.bot_user.payload()
        user.update({"verified": True, "mfa_enabled": False, "email": None, "flags": 0})
        ready: dict[str, Any] = {
            "v": 10,
            "user": user,
            "user_settings": {},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in fake.bot_guilds()],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": fake.gateway_url,
            "application": {"id": str(fake.application_id), "flags": fake.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "auth": {},
            "_trace": ['["fake-discord-gateway",{"micros":0}]'],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._send_dispatch(session, "READY", ready)
        for guild in fake.bot_guilds():
            await self._send_dispatch(
                session, "GUILD_CREATE", fake.guild_create_for(guild, intents)
            )
        fake.notify()

    async def _resume(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or not self._token_ok(data.get("token")):
            await conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        previous = session.connection
        if previous is not None and previous is not conn:
            await previous.close(4000, "Session resumed elsewhere")
        session.connection = conn
        conn.session = session
        self.current = session
        last = int(data.get("seq") or 0)
        for event in list(session.events):
            if event["s"] > last:
                await conn.send(event)
        await self._send_dispatch(session, "RESUMED", {"_trace": ["fake-discord-gateway"]})

    async def _request_members(self, conn: GatewayConnection, data: dict[str, Any]) -> None:
        fake = self.fake
        guild = fake.world.guilds.get(int(data.get("guild_id", 0)))
        if guild is None or conn.session is None:
            return
        user_ids = {int(u) for u in data.get("user_ids") or []}
        query = str(data.get("query") or "")
        limit = int(data.get("limit") or 0) or len(guild.members)
        members = []
        for uid in guild.members:
            user = fake.world.users[uid]
            if user_ids and uid not in user_ids:
                continue
            if not user_ids and query and not user.username.lower().startswith(query.lower()):
                continue
            members.append(fake.world.member_payload(guild, uid))
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": members[:limit],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [str(u) for u in user_ids if u not in guild.members],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self._send_dispatch(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    # ---- dispatching ---------------------------------------------------------------------

    async def _send_dispatch(self, session: GatewaySession, event: str, data: Any) -> None:
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.events.append(payload)
        conn = session.connection
        if conn is not None and conn.open:
            await conn.send(payload)

    @property
    def connected(self) -> bool:
        session = self.current
        return session is not None and session.connection is not None and session.connection.open

    async def dispatch(self, event: str, data: Any, *, intent: int = 0) -> bool:
        """Send an event to the bot's current session if it subscribed to ``intent``."""
        session = self.current
        if session is None:
            return False
        if intent and not session.intents & intent:
            return False
        await self._send_dispatch(session, event, data)
        return True

    async def dispatch_required(self, event: str, data: Any) -> None:
        if not self.connected:
            raise DriverError(
                f"cannot dispatch {event}: no bot is connected to the fake gateway "
                "(start one with running_bot(fake, bot))"
            )
        await self.dispatch(event, data)

    async def reconnect_request(self) -> None:
        """Ask the bot to reconnect (op 7); it should RESUME."""
        session = self.current
        if session is not None and session.connection is not None:
            await session.connection.send({"op": RECONNECT, "d": None, "s": None, "t": None})

    async def outage(self) -> None:
        """Discord out of reach: every connection dropped, new ones refused until `down` is
        cleared."""
        self.down = True
        await self.close_all()

    async def close_all(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(Exception):
                await conn.close(1001, "fake discord stopping")
