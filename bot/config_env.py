"""Settings from the environment: the short names DESIGN.md gives, BOT_<SECTION>__<KEY> for
the rest, lists written as people write them, and what the library would drop without a word
(a misspelt section) or report without naming the variable (a table that is not JSON)."""

from __future__ import annotations

import os
from typing import Any, get_origin

from pydantic_settings import EnvSettingsSource

# DESIGN.md's short names, mapped to (section, key).
NAMED_ENV: dict[str, tuple[str, str]] = {
    "DISCORD_TOKEN": ("discord", "token"),
    "BOT_DEV_GUILD": ("discord", "dev_guild"),
    "CIVITAI_TOKEN": ("civitai", "token"),
    "CIVITAI_BASE_URL": ("civitai", "base_url"),
    "BOT_DB_PATH": ("database", "path"),
    "OPENAI_API_KEY": ("openai", "api_key"),
    "OPENAI_BASE_URL": ("openai", "base_url"),
}
ENV_PREFIX = "BOT_"


def env_name(section: str, key: str) -> str:
    for name, where in NAMED_ENV.items():
        if where == (section, key):
            return name
    return f"{ENV_PREFIX}{section.upper()}__{key.upper()}"


class NamedEnvSource(EnvSettingsSource):
    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        environ = {k.upper(): v for k, v in os.environ.items()}
        for name, (section, key) in NAMED_ENV.items():
            if environ.get(name):
                data.setdefault(section, {})[key] = environ[name]
        return data


class ListFriendlyEnv(EnvSettingsSource):
    """Lists from the environment as JSON (["a", "b"]) or, as people write them, a, b."""

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            annotation = getattr(field, "annotation", None)
            if isinstance(value, str) and get_origin(annotation) is list:
                return [item.strip() for item in value.split(",") if item.strip()]
            raise NotJson(field_name) from None


class NotJson(ValueError):
    """A table setting from the environment that is not JSON; pydantic-settings reports only
    the section it belongs to, so the key travels with the error."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def not_json(section: str, key: str) -> str:
    name = env_name(section, key)
    return (
        f"invalid configuration in the environment: {name} is not valid JSON; a table is "
        f'written as JSON, e.g. BOT_OPENAI__PRICES={{"gpt-image-1-mini": 20}}'
    )


UNKNOWN = "unknown setting (see config.example.toml for the valid keys)"


def unknown_sections(sections: set[str]) -> list[str]:
    """BOT_<SECTION>__<KEY> variables naming no section of the settings. pydantic-settings
    drops them without a word (it refuses only a misspelt key of a known section), so a
    misspelt section (BOT_METRIC__PORT) would leave its setting at the default."""
    lines = []
    for name in sorted(os.environ, key=str.upper):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or "__" not in upper:
            continue
        section, _, key = upper.removeprefix(ENV_PREFIX).partition("__")
        if section.lower() not in sections:
            lines.append(f"  {section.lower()}.{key.lower()} (env {upper}): {UNKNOWN}")
    return lines
