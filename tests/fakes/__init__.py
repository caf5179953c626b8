"""A loopback fake Discord (REST + gateway + CDN) for running the real discord.py client in tests.

Typical use::

    async with FakeDiscord() as fake:
        guild = fake.add_guild("g")
        channel = fake.add_channel(guild, "general")
        user = fake.add_member(guild, "alice")
        async with running_bot(fake, make_bot()):
            handle = await fake.slash(guild, channel, user, "ping")
            assert (await handle.response())["type"] == 4
"""

from .errors import ApiError, DriverError, InteractionRejected
from .interactions import InteractionHandle
from .rest import CallRecord
from .runner import patched_endpoints, running_bot, start_bot, stop_bot
from .server import FakeDiscord
from .snowflakes import SnowflakeFactory, snowflake_time

__all__ = [
    "ApiError",
    "CallRecord",
    "DriverError",
    "FakeDiscord",
    "InteractionHandle",
    "InteractionRejected",
    "SnowflakeFactory",
    "patched_endpoints",
    "running_bot",
    "snowflake_time",
    "start_bot",
    "stop_bot",
]
