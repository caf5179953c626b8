"""The `user` sent with each request: a salted hash of guild and member, never a Discord id.

OpenAI uses it to monitor abuse per end user. Discord ids are public, so an unsalted hash could
be reversed by hashing candidate ids; a keyed hash (HMAC-SHA256 with an operator's secret salt)
cannot. The same member in the same guild always gets the same value under one salt.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import SecretStr

USER_HASH_PREFIX = "u-"


def user_hash(salt: SecretStr | str | bytes, guild_id: int, member_id: int) -> str:
    secret = salt.get_secret_value() if isinstance(salt, SecretStr) else salt
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("user_hash needs a non-empty salt (unsalted ids can be reversed)")
    digest = hmac.new(key, f"{int(guild_id)}:{int(member_id)}".encode(), hashlib.sha256)
    # 128 bits in 32 hex characters: short, still unique, and never all digits.
    return USER_HASH_PREFIX + digest.hexdigest()[:32]


def looks_like_raw_id(value: str) -> bool:
    """True for a bare number (a Discord snowflake): it must never be sent as `user`."""
    return value.strip().isdigit()
