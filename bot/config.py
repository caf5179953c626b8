"""Settings: an optional TOML file, every key overridable from the environment (env wins).

Environment names: the DESIGN.md names (DISCORD_TOKEN, CIVITAI_TOKEN, CIVITAI_BASE_URL,
BOT_DB_PATH, BOT_DEV_GUILD, OPENAI_API_KEY, OPENAI_BASE_URL), BOT_PROVIDER for the top-level
`provider`, and for every other key `BOT_<SECTION>__<KEY>`, e.g. `BOT_CIVITAI__WHATIF=true`.
The TOML path comes from `--config`, else BOT_CONFIG, else config.toml; a missing default file
is fine, a missing explicit one is an error.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from bot.config_env import (
    ENV_PREFIX,
    NAMED_ENV,  # noqa: F401 (the settings' interface: docs tests read it from here)
    UNKNOWN,
    ListFriendlyEnv,
    NamedEnvSource,
    NotJson,
    env_name,
    not_json,
    unknown_sections,
)
from bot.net import is_loopback, is_private_network

Period = Literal["none", "daily", "weekly", "monthly"]
Provider = Literal["civitai", "openai"]
Currency = Literal["yellow", "blue", "green", "fakeRed"]

# Settings that are not in a section (BOT_<KEY>).
TOP_LEVEL = frozenset({"provider"})


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _header_safe(value: SecretStr) -> SecretStr:
    # Sent as an HTTP header: a space or a non-ASCII character (a typographic quote pasted with
    # the token) made every request raise inside the HTTP library. Never quote the value.
    secret = value.get_secret_value()
    prefix = secret.split(" ", 1)[0]
    if " " in secret and prefix in ("Bot", "Bearer"):  # the header's word is the bot's to add
        raise ValueError(f"starts with '{prefix} ': give the token alone, without it")
    if not all("!" <= char <= "~" for char in secret):
        raise ValueError(
            "contains a space or a character that is not plain ASCII (pasted with a quote "
            "mark or a non-breaking space?); copy the token again"
        )
    return value


# A token read from a file or a Kubernetes secret often ends in a newline: sent as it is, the
# HTTP library refuses the header (quoting it) and every request fails as a lost connection.
Token = Annotated[SecretStr, BeforeValidator(_stripped), AfterValidator(_header_safe)]


def endpoint_url(value: str) -> str:
    """An endpoint's base URL, checked without ever quoting it (a user:password@ may be written
    into it, which is refused: the HTTP client sends it as Basic auth in place of the Bearer
    token, so every request would be refused with 401 and every job fail)."""
    if not value.startswith(("https://", "http://")):
        raise ValueError("must start with https:// (or http:// for a local simulator)")
    value = value.rstrip("/")
    # Any @ means a userinfo (a # / ? in a password ends the host part early, so the @ can
    # seem to be in the path): the token goes in its own setting, never in the URL.
    if "@" in value:
        raise ValueError(
            "must not carry a user:password@: the bot sends its API token (CIVITAI_TOKEN, "
            "OPENAI_API_KEY) as a Bearer header, which credentials in the URL would replace"
        )
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port that is not a number raises ValueError
        httpx.URL(value)
    except (ValueError, httpx.InvalidURL):
        parts = None
    if parts is None or not parts.hostname or parts.fragment:
        raise ValueError("not a URL the bot can use")
    return value


def tokened_endpoint_url(value: str) -> str:
    """endpoint_url, for an endpoint sent a token in every request: in clear only to a
    simulator on this machine (a typo of https would be answered with a redirect only after
    the token was sent)."""
    value = endpoint_url(value)
    host = urlsplit(value).hostname or ""
    if value.startswith("http://") and not is_loopback(host):
        raise ValueError("must start with https:// (http:// only for a simulator on this machine)")
    return value


def local_network_endpoint_url(value: str) -> str:
    """tokened_endpoint_url for a self-hosted OpenAI-compatible server: http:// also on a
    private network (a compose service, a LAN box), never to a public host."""
    value = endpoint_url(value)
    host = urlsplit(value).hostname or ""
    if value.startswith("http://") and not is_private_network(host):
        raise ValueError(
            "must start with https:// (http:// only for this machine or a private network)"
        )
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DiscordSettings(_Section):
    token: Token | None = None
    dev_guild: int | None = Field(None, gt=0)
    # For large bots: run this many gateway shards in one process (an AutoShardedBot).
    shard_count: int | None = Field(None, ge=1, le=10_000)


class CivitaiSettings(_Section):
    token: Token | None = None
    # repr=False: a user:password@ may be written into it.
    base_url: str = Field("https://orchestration.civitai.com", repr=False)
    currencies: list[Currency] = Field(default_factory=list)
    whatif: bool = False
    wait_seconds: int = Field(60, ge=0, le=300)
    request_timeout_seconds: float = Field(30.0, gt=0, le=600)
    max_retries: int = Field(5, ge=0, le=20)
    retry_max_delay_seconds: float = Field(30.0, gt=0, le=600)
    blob_hosts: list[str] = Field(default_factory=lambda: ["civitai.com", "*.civitai.com"])
    max_blob_bytes: int = Field(64 * 1024 * 1024, gt=0)
    # The results' Upscale: the upscaler model's AIR; unset uses the orchestrator's default.
    upscaler_model: str | None = Field(None, min_length=1, max_length=300)
    # Prompt enhancement rewrites a prompt for this ecosystem (the generation's family).
    enhance_ecosystem: str = Field("openai", min_length=1, max_length=100)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return tokened_endpoint_url(value)


class OpenAISettings(_Section):
    """The OpenAI Images API lane (BOT_PROVIDER=openai), or any OpenAI-compatible endpoint."""

    api_key: Token | None = None
    base_url: str = Field("https://api.openai.com/v1", repr=False)
    # Previews streamed per image while it forms (each costs ~100 output tokens upstream).
    partial_images: int = Field(2, ge=1, le=3)
    # The models the endpoint serves; empty: every model the lane knows.
    models: list[str] = Field(default_factory=list)
    # Buzz per image, per model: a number (any quality) or {quality = Buzz}; a model left out
    # keeps the Civitai table's price; gpt-image-1-mini has none until one is set here.
    prices: dict[str, int | dict[str, int]] = Field(default_factory=dict)
    # The key of the `user` hash sent upstream; empty: generated once, kept in the database.
    user_salt: SecretStr | None = None
    # Admins' switch: send `moderation: low` in age-restricted channels (never elsewhere).
    moderation_low_allowed: bool = False
    request_timeout_seconds: float = Field(300.0, gt=0, le=1800)
    max_retries: int = Field(3, ge=0, le=20)
    # Calls per job that streamed previews and then failed (each billed upstream), at most.
    max_output_calls: int = Field(2, ge=1, le=5)
    retry_max_delay_seconds: float = Field(30.0, gt=0, le=600)
    max_image_bytes: int = Field(64 * 1024 * 1024, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return local_network_endpoint_url(value)

    @field_validator("models")
    @classmethod
    def _known_models(cls, value: list[str]) -> list[str]:
        from bot.openai_api.catalog import MODEL_NAMES, model_spec

        unknown = [name for name in value if model_spec(name) is None]
        if unknown:
            raise ValueError(f"unknown model(s) {', '.join(unknown)}: use {', '.join(MODEL_NAMES)}")
        return value

    @field_validator("prices")
    @classmethod
    def _valid_prices(cls, value: dict[str, Any]) -> dict[str, Any]:
        from bot.openai_api.pricing import PriceTable

        PriceTable(value)  # raises ValueError naming the model and what is wrong
        return value


class DatabaseSettings(_Section):
    path: Path = Path("data/bot.sqlite3")

    @field_validator("path")
    @classmethod
    def _a_file(cls, value: Path) -> Path:
        # Each connection would get a database of its own, and every balance go at restart.
        if str(value) == ":memory:":
            raise ValueError("must be a file's path (an in-memory database loses every balance)")
        return value


class RetentionSettings(_Section):
    # Source images of jobs that ended more than this many days ago are deleted.
    days: int = Field(30, ge=1, le=36500)


class JobSettings(_Section):
    deadline_minutes: int = Field(30, ge=1, le=24 * 60)
    # A finished job's images are fetched and posted, retrying, for up to this long.
    delivery_deadline_minutes: int = Field(30, ge=1, le=24 * 60)
    # Start delivering as a channel message this long before the 15-minute token expires.
    token_margin_seconds: int = Field(60, ge=0, le=600)
    status_edit_interval_seconds: float = Field(5.0, ge=1.0, le=120.0)
    # On SIGTERM, calls under way on the OpenAI lane (which cannot be resumed) may finish for
    # this long; keep it under the container's stop timeout (compose.yaml: 30 s).
    shutdown_drain_seconds: float = Field(20.0, ge=0.0, le=600.0)


class MediaSettings(_Section):
    # Members' attachments; the bot's own posted results (an Upscale, an Edit of one) are
    # fetched back up to Discord's largest upload limit (bot.media.limits.POSTED_MAX_BYTES).
    max_attachment_bytes: int = Field(25 * 1024 * 1024, gt=0)
    max_pixels: int = Field(40_000_000, gt=0)
    # A source over this many bytes is re-encoded to fit (one under it is sent as attached).
    max_source_bytes: int = Field(8 * 1024 * 1024, gt=0)
    # Attachments are downloaded only from Discord's CDN ("*." = subdomains).
    attachment_hosts: list[str] = Field(
        default_factory=lambda: ["cdn.discordapp.com", "media.discordapp.net"]
    )


class GuildDefaults(_Section):
    """What a guild starts with before an admin changes anything."""

    default_model: str = "gpt-image-2"
    allowance: int = Field(0, ge=0, le=10_000_000)
    allowance_period: Period = "weekly"
    confirm_above: int = Field(500, ge=0, le=10_000_000)
    per_member_concurrency: int = Field(2, ge=1, le=50)
    per_guild_concurrency: int = Field(10, ge=1, le=10_000, validate_default=True)
    strikes_to_ban: int = Field(3, ge=0, le=100)
    strike_window_days: int = Field(30, ge=1, le=3650)

    @field_validator("default_model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        # A misspelt model would pass check-config and refuse every /imagine at run time.
        from bot.catalog.errors import CatalogError
        from bot.catalog.names import MODEL_NAMES, parse_model

        try:
            return parse_model(value).value
        except CatalogError:
            raise ValueError(
                f"unknown model {value!r}: use one of {', '.join(MODEL_NAMES)}"
            ) from None

    @field_validator("per_guild_concurrency")
    @classmethod
    def _guild_covers_member(cls, value: int, info: ValidationInfo) -> int:
        # /settings concurrency refuses this too (per-member cannot be more than per-guild).
        member = info.data.get("per_member_concurrency")
        if member is not None and value < member:
            raise ValueError(
                f"must be at least per_member_concurrency ({member}, "
                "BOT_DEFAULTS__PER_MEMBER_CONCURRENCY)"
            )
        return value


class SimulatorSettings(_Section):
    speed: float = Field(1.0, gt=0, le=1000)
    port: int = Field(0, ge=0, le=65535)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "json": one object per line, for log collectors.
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("format", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class MetricsSettings(_Section):
    """/metrics and /healthz over HTTP; off unless a port is set (0 = any free port)."""

    port: int | None = Field(None, ge=0, le=65535)
    host: str = "127.0.0.1"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    # Which upstream service runs the jobs (BOT_PROVIDER): civitai (default) or openai.
    provider: Provider = "civitai"
    discord: DiscordSettings = Field(default_factory=DiscordSettings)
    civitai: CivitaiSettings = Field(default_factory=CivitaiSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    defaults: GuildDefaults = Field(default_factory=GuildDefaults)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Init kwargs carry the TOML file, so they rank below the environment.
        return (NamedEnvSource(settings_cls), ListFriendlyEnv(settings_cls), init_settings)

    @property
    def simulated(self) -> bool:
        """No token for the active lane (CIVITAI_TOKEN, or OPENAI_API_KEY with
        BOT_PROVIDER=openai): the bot runs on that lane's built-in simulator."""
        token = self.openai.api_key if self.provider == "openai" else self.civitai.token
        return token is None or not token.get_secret_value()

    def sections(self) -> list[str]:
        """The names of the settings' sections (the top-level keys that are not sections)."""
        return [name for name in type(self).model_fields if name not in TOP_LEVEL]


class ConfigError(Exception):
    """The configuration is unusable; the message names each key and its env override."""


def default_config_path() -> Path:
    return Path(os.environ.get("BOT_CONFIG") or "config.toml")


def load_settings(path: Path | None = None) -> Settings:
    explicit = path is not None or bool(os.environ.get("BOT_CONFIG"))
    path = path or default_config_path()
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except OSError as exc:  # a folder, or a file this user may not read (mode 600)
            raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    elif explicit:
        raise ConfigError(f"config file {path} does not exist")
    stray = unknown_sections({name for name in Settings.model_fields if name not in TOP_LEVEL})
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path, stray)) from None
    except SettingsError as exc:
        section = str(exc).split('"')[1] if str(exc).count('"') >= 2 else ""
        if isinstance(exc.__cause__, NotJson) and section:
            raise ConfigError(not_json(section, exc.__cause__.key)) from None
        raise ConfigError(
            f"invalid configuration in the environment: {exc}; a list is written as JSON or "
            'comma-separated, e.g. BOT_CIVITAI__CURRENCIES=yellow,blue or ["yellow", "blue"]'
        ) from None
    if stray:
        raise ConfigError("\n".join([_heading(path), *stray]))
    return settings


def _heading(path: Path) -> str:
    return f"invalid configuration ({path} and environment):"


def _describe(exc: ValidationError, path: Path, stray: list[str]) -> str:
    lines = [_heading(path), *stray]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        env = env_name(loc[0], loc[1]) if len(loc) >= 2 else f"{ENV_PREFIX}{key.upper()}"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = UNKNOWN
        elif (len(loc) >= 3 and loc[2].isdigit()) or err["type"] == "list_type":
            message += f"; a list is written as JSON or comma-separated, e.g. {env}=a,b"
        lines.append(f"  {key} (env {env}): {message}")
    return "\n".join(lines)


def problems_for_running(settings: Settings) -> list[str]:
    """What stops `python -m bot run`; empty when the bot can start."""
    problems = []
    token = settings.discord.token
    if token is None or not token.get_secret_value().strip():
        problems.append("discord.token is missing: set DISCORD_TOKEN (or [discord] token)")
    return problems
