"""The fake's world: users, guilds, roles, members, channels, messages and stored files.

Every ``*_payload`` method returns the JSON object the real API would send, complete enough
for discord.py 2.7 to parse.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from typing import Any

from .snowflakes import SnowflakeFactory, iso8601, utcnow

# Permission bits (https://discord.com/developers/docs/topics/permissions).
CREATE_INSTANT_INVITE = 1 << 0
ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_CHANNELS = 1 << 4
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
MENTION_EVERYONE = 1 << 17
USE_EXTERNAL_EMOJIS = 1 << 18
CONNECT = 1 << 20
SPEAK = 1 << 21
CHANGE_NICKNAME = 1 << 26
USE_APPLICATION_COMMANDS = 1 << 31
MANAGE_THREADS = 1 << 34
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 53) - 1

#: What a new guild's @everyone role gets by default.
DEFAULT_EVERYONE_PERMISSIONS = (
    CREATE_INSTANT_INVITE
    | ADD_REACTIONS
    | VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | MENTION_EVERYONE
    | USE_EXTERNAL_EMOJIS
    | CONNECT
    | SPEAK
    | CHANGE_NICKNAME
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)

# Message flags.
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_IS_VOICE_MESSAGE = 1 << 13
FLAG_IS_COMPONENTS_V2 = 1 << 15

# Channel types.
GUILD_TEXT = 0
DM = 1
PUBLIC_THREAD = 11
THREAD_TYPES = frozenset({10, 11, 12})


@dataclasses.dataclass
class User:
    id: int
    username: str
    bot: bool = False
    global_name: str | None = None
    accepts_dms: bool = True

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "bot": self.bot,
            "system": False,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
            "collectibles": None,
            "primary_guild": None,
        }


@dataclasses.dataclass
class Role:
    id: int
    guild_id: int
    name: str
    permissions: int
    position: int
    managed: bool = False
    bot_id: int | None = None

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": False,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclasses.dataclass
class Member:
    user_id: int
    guild_id: int
    roles: list[int]
    joined_at: dt.datetime
    nick: str | None = None

    def payload(self, user: User, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in self.roles],
            "joined_at": iso8601(self.joined_at),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = user.payload()
        return data


@dataclasses.dataclass
class Overwrite:
    id: int
    type: int  # 0 role, 1 member
    allow: int = 0
    deny: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "allow": str(self.allow),
            "deny": str(self.deny),
        }


@dataclasses.dataclass
class Channel:
    id: int
    type: int
    name: str | None = None
    guild_id: int | None = None
    position: int = 0
    overwrites: list[Overwrite] = dataclasses.field(default_factory=list)
    recipient_id: int | None = None  # DM channels
    last_message_id: int | None = None
    # Discord's age restriction ("NSFW"); a thread has none of its own: its parent's applies.
    nsfw: bool = False
    parent_id: int | None = None  # threads
    owner_id: int | None = None  # threads
    # A thread archived (read-only: its messages cannot be edited) and perhaps locked (only
    # those with Manage Threads may unarchive it, by posting).
    archived: bool = False
    locked: bool = False
    # Slowmode: seconds between a member's messages (those who manage messages or the
    # channel are exempt), and when the bot last posted here (time.monotonic()).
    rate_limit_per_user: int = 0
    bot_posted_at: float | None = None
    created_at: dt.datetime = dataclasses.field(default_factory=utcnow)

    def payload(self, world: World) -> dict[str, Any]:
        if self.type in THREAD_TYPES:
            return self._thread_payload()
        if self.type == DM:
            assert self.recipient_id is not None
            return {
                "id": str(self.id),
                "type": DM,
                "last_message_id": _opt_str(self.last_message_id),
                "recipients": [world.users[self.recipient_id].payload()],
                "flags": 0,
            }
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [o.payload() for o in self.overwrites],
            "nsfw": self.nsfw,
            "topic": None,
            "last_message_id": _opt_str(self.last_message_id),
            "rate_limit_per_user": self.rate_limit_per_user,
            "parent_id": None,
            "flags": 0,
        }

    def _thread_payload(self) -> dict[str, Any]:
        """A thread as Discord describes it: no overwrites and no nsfw flag of its own."""
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "parent_id": str(self.parent_id),
            "owner_id": str(self.owner_id),
            "name": self.name,
            "last_message_id": _opt_str(self.last_message_id),
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "applied_tags": [],
            "thread_metadata": {
                "archived": self.archived,
                "auto_archive_duration": 1440,
                "archive_timestamp": iso8601(self.created_at),
                "locked": self.locked,
                "create_timestamp": iso8601(self.created_at),
            },
        }


@dataclasses.dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    roles: dict[int, Role] = dataclasses.field(default_factory=dict)
    channels: dict[int, Channel] = dataclasses.field(default_factory=dict)
    # Active threads (Discord lists them apart from the channels).
    threads: dict[int, Channel] = dataclasses.field(default_factory=dict)
    members: dict[int, Member] = dataclasses.field(default_factory=dict)
    created_at: dt.datetime = dataclasses.field(default_factory=utcnow)

    def partial_payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(self.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.payload() for r in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "max_members": 500000,
            "max_video_channel_users": 25,
        }


@dataclasses.dataclass
class Blob:
    """An uploaded file served by the fake CDN."""

    id: int
    channel_id: int
    filename: str
    data: bytes
    content_type: str | None
    ephemeral: bool = False


@dataclasses.dataclass
class StoredMessage:
    """A message as the API returns it (``data``) plus what only the fake knows."""

    id: int
    channel_id: int
    data: dict[str, Any]
    ephemeral_to: int | None = None  # user id who can see an ephemeral message
    interaction_id: int | None = None
    deleted: bool = False
    reactions: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    @property
    def ephemeral(self) -> bool:
        return self.ephemeral_to is not None

    @property
    def author_id(self) -> int:
        return int(self.data["author"]["id"])

    def payload(self, viewer_id: int | None = None) -> dict[str, Any]:
        data = copy.deepcopy(self.data)
        data["reactions"] = [
            {
                "emoji": {"id": None, "name": emoji},
                "count": len(users),
                "count_details": {"burst": 0, "normal": len(users)},
                "me": viewer_id in users if viewer_id is not None else False,
                "me_burst": False,
                "burst_colors": [],
            }
            for emoji, users in self.reactions.items()
            if users
        ]
        return data


def _opt_str(value: int | None) -> str | None:
    return None if value is None else str(value)


class World:
    """All of the fake's data. No I/O here: the server and driver build on it."""

    def __init__(self, snowflakes: SnowflakeFactory) -> None:
        self.snowflakes = snowflakes
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, StoredMessage] = {}
        self.channel_history: dict[int, list[int]] = {}
        self.blobs: dict[int, Blob] = {}
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id

    # ---- lookups -------------------------------------------------------------------------

    def guild(self, guild_id: int) -> Guild:
        return self.guilds[int(guild_id)]

    def channel(self, channel_id: int) -> Channel:
        return self.channels[int(channel_id)]

    def user(self, user_id: int) -> User:
        return self.users[int(user_id)]

    # ---- building ------------------------------------------------------------------------

    def new_user(self, username: str, *, bot: bool = False) -> User:
        user = User(id=self.snowflakes.new(), username=username, bot=bot, global_name=username)
        self.users[user.id] = user
        return user

    def new_guild(self, name: str, owner: User) -> Guild:
        guild = Guild(id=self.snowflakes.new(), name=name, owner_id=owner.id)
        guild.roles[guild.id] = Role(
            id=guild.id,
            guild_id=guild.id,
            name="@everyone",
            permissions=DEFAULT_EVERYONE_PERMISSIONS,
            position=0,
        )
        self.guilds[guild.id] = guild
        return guild

    def new_role(
        self,
        guild: Guild,
        name: str,
        permissions: int = 0,
        position: int = 1,
        *,
        managed: bool = False,
        bot_id: int | None = None,
    ) -> Role:
        role = Role(
            id=self.snowflakes.new(),
            guild_id=guild.id,
            name=name,
            permissions=permissions,
            position=position,
            managed=managed,
            bot_id=bot_id,
        )
        guild.roles[role.id] = role
        return role

    def new_member(self, guild: Guild, user: User, roles: list[int] | None = None) -> Member:
        member = Member(
            user_id=user.id, guild_id=guild.id, roles=list(roles or []), joined_at=utcnow()
        )
        guild.members[user.id] = member
        return member

    def new_text_channel(self, guild: Guild, name: str, *, nsfw: bool = False) -> Channel:
        channel = Channel(
            id=self.snowflakes.new(),
            type=GUILD_TEXT,
            name=name,
            guild_id=guild.id,
            position=len(guild.channels),
            nsfw=nsfw,
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self.channel_history[channel.id] = []
        return channel

    def new_thread(self, parent: Channel, name: str, owner_id: int) -> Channel:
        assert parent.guild_id is not None and parent.type == GUILD_TEXT
        thread = Channel(
            id=self.snowflakes.new(),
            type=PUBLIC_THREAD,
            name=name,
            guild_id=parent.guild_id,
            parent_id=parent.id,
            owner_id=owner_id,
        )
        self.guilds[parent.guild_id].threads[thread.id] = thread
        self.channels[thread.id] = thread
        self.channel_history[thread.id] = []
        return thread

    def dm_channel_for(self, user_id: int) -> Channel:
        existing = self.dm_channels.get(user_id)
        if existing is not None:
            return self.channels[existing]
        channel = Channel(id=self.snowflakes.new(), type=DM, recipient_id=user_id)
        self.channels[channel.id] = channel
        self.channel_history[channel.id] = []
        self.dm_channels[user_id] = channel.id
        return channel

    # ---- permissions (https://discord.com/developers/docs/topics/permissions) -----------

    def base_permissions(self, guild: Guild, user_id: int) -> int:
        if user_id == guild.owner_id:
            return ALL_PERMISSIONS
        member = guild.members.get(user_id)
        perms = guild.roles[guild.id].permissions
        if member is not None:
            for role_id in member.roles:
                role = guild.roles.get(role_id)
                if role is not None:
                    perms |= role.permissions
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        return perms

    def channel_permissions(self, channel: Channel, user_id: int) -> int:
        if channel.type == DM:
            return (
                VIEW_CHANNEL
                | SEND_MESSAGES
                | EMBED_LINKS
                | ATTACH_FILES
                | READ_MESSAGE_HISTORY
                | ADD_REACTIONS
                | USE_EXTERNAL_EMOJIS
                | USE_APPLICATION_COMMANDS
            )
        assert channel.guild_id is not None
        if channel.type in THREAD_TYPES:
            # A thread has its parent's permissions; sending there takes Send Messages in
            # Threads instead of Send Messages.
            assert channel.parent_id is not None
            perms = self.channel_permissions(self.channels[channel.parent_id], user_id)
            if perms & SEND_MESSAGES_IN_THREADS:
                return perms | SEND_MESSAGES
            return perms & ~SEND_MESSAGES
        guild = self.guilds[channel.guild_id]
        perms = self.base_permissions(guild, user_id)
        if perms == ALL_PERMISSIONS and (
            user_id == guild.owner_id or self._is_admin(guild, user_id)
        ):
            return ALL_PERMISSIONS
        by_id = {o.id: o for o in channel.overwrites}
        everyone = by_id.get(guild.id)
        if everyone is not None:
            perms = (perms & ~everyone.deny) | everyone.allow
        member = guild.members.get(user_id)
        role_ids = member.roles if member is not None else []
        allow = deny = 0
        for role_id in role_ids:
            ow = by_id.get(role_id)
            if ow is not None and ow.type == 0:
                allow |= ow.allow
                deny |= ow.deny
        perms = (perms & ~deny) | allow
        own = by_id.get(user_id)
        if own is not None and own.type == 1:
            perms = (perms & ~own.deny) | own.allow
        if not perms & VIEW_CHANNEL:
            return 0
        if not perms & SEND_MESSAGES:
            # Without Send Messages a text channel also loses what depends on sending.
            perms &= ~(MENTION_EVERYONE | ATTACH_FILES | EMBED_LINKS | SEND_MESSAGES_IN_THREADS)
        return perms

    def _is_admin(self, guild: Guild, user_id: int) -> bool:
        member = guild.members.get(user_id)
        perms = guild.roles[guild.id].permissions
        for role_id in member.roles if member else []:
            role = guild.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        return bool(perms & ADMINISTRATOR)

    # ---- payloads ------------------------------------------------------------------------

    def member_payload(
        self, guild: Guild, user_id: int, *, with_user: bool = True
    ) -> dict[str, Any]:
        return guild.members[user_id].payload(self.users[user_id], with_user=with_user)

    def guild_create_payload(self, guild: Guild, *, member_ids: list[int]) -> dict[str, Any]:
        data = guild.partial_payload()
        data.update(
            {
                "joined_at": iso8601(guild.created_at),
                "large": False,
                "unavailable": False,
                "member_count": len(guild.members),
                "voice_states": [],
                "members": [self.member_payload(guild, uid) for uid in member_ids],
                "channels": [c.payload(self) for c in guild.channels.values()],
                "threads": [t.payload(self) for t in guild.threads.values()],
                "presences": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
                "embedded_activities": [],
            }
        )
        return data

    # ---- messages ------------------------------------------------------------------------

    def store_message(self, message: StoredMessage) -> None:
        self.messages[message.id] = message
        if message.ephemeral_to is None:
            self.channel_history.setdefault(message.channel_id, []).append(message.id)
            channel = self.channels.get(message.channel_id)
            if channel is not None:
                channel.last_message_id = message.id

    def visible_history(self, channel_id: int) -> list[StoredMessage]:
        """Non-ephemeral, non-deleted messages of a channel, oldest first."""
        ids = self.channel_history.get(int(channel_id), [])
        return [self.messages[i] for i in ids if not self.messages[i].deleted]
