"""Settings: a TOML file, the environment on top, errors that name the key and its env var."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import ConfigError, Settings, env_name, load_settings, problems_for_running

DISCORD_SECRET = "discord-SECRET-4f9a1c"
CIVITAI_SECRET = "civitai-SECRET-77b2e0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No bot setting from the caller's environment, and no stray config.toml in the cwd."""
    for key in list(os.environ):
        if key.upper().startswith(("BOT_", "CIVITAI_", "DISCORD_", "OPENAI_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


TOML = f"""
[discord]
token = "{DISCORD_SECRET}"
dev_guild = 123456789012345678

[civitai]
token = "{CIVITAI_SECRET}"
base_url = "http://127.0.0.1:8800/"
currencies = ["blue"]
wait_seconds = 20
max_retries = 2

[database]
path = "from-toml.sqlite3"

[defaults]
allowance = 1000
allowance_period = "daily"
"""


def test_defaults_without_any_file_or_environment() -> None:
    settings = load_settings()
    assert settings.civitai.base_url == "https://orchestration.civitai.com"
    assert settings.civitai.currencies == []
    assert settings.civitai.wait_seconds == 60
    assert settings.database.path == Path("data/bot.sqlite3")
    assert settings.discord.token is None and settings.discord.dev_guild is None
    assert settings.simulated  # no CIVITAI_TOKEN: the built-in simulator
    assert problems_for_running(settings) == [
        "discord.token is missing: set DISCORD_TOKEN (or [discord] token)"
    ]


def test_values_from_toml(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, TOML))
    assert settings.discord.token.get_secret_value() == DISCORD_SECRET
    assert settings.discord.dev_guild == 123456789012345678
    assert settings.civitai.token.get_secret_value() == CIVITAI_SECRET
    assert settings.civitai.base_url == "http://127.0.0.1:8800"  # trailing slash dropped
    assert settings.civitai.currencies == ["blue"]
    assert settings.civitai.wait_seconds == 20
    assert settings.civitai.max_retries == 2
    assert settings.database.path == Path("from-toml.sqlite3")
    assert settings.defaults.allowance == 1000
    assert settings.defaults.allowance_period == "daily"
    assert not settings.simulated
    assert problems_for_running(settings) == []


def test_environment_overrides_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_CIVITAI__WAIT_SECONDS", "45")
    monkeypatch.setenv("BOT_DB_PATH", "/srv/bot/from-env.sqlite3")
    monkeypatch.setenv("DISCORD_TOKEN", "discord-from-env")
    monkeypatch.setenv("BOT_DEV_GUILD", "42")
    monkeypatch.setenv("BOT_DEFAULTS__ALLOWANCE_PERIOD", "monthly")
    settings = load_settings(write(tmp_path, TOML))
    assert settings.civitai.wait_seconds == 45
    assert settings.database.path == Path("/srv/bot/from-env.sqlite3")
    assert settings.discord.token.get_secret_value() == "discord-from-env"
    assert settings.discord.dev_guild == 42
    assert settings.defaults.allowance_period == "monthly"
    # The rest of each section still comes from the file.
    assert settings.civitai.max_retries == 2
    assert settings.civitai.base_url == "http://127.0.0.1:8800"
    assert settings.civitai.token.get_secret_value() == CIVITAI_SECRET
    assert settings.defaults.allowance == 1000


def test_named_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIVITAI_TOKEN", CIVITAI_SECRET)
    monkeypatch.setenv("CIVITAI_BASE_URL", "http://localhost:9000")
    settings = load_settings()
    assert settings.civitai.token.get_secret_value() == CIVITAI_SECRET
    assert settings.civitai.base_url == "http://localhost:9000"
    assert not settings.simulated


def test_the_named_variable_wins_over_the_generic_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_DATABASE__PATH", "generic.sqlite3")
    monkeypatch.setenv("BOT_DB_PATH", "named.sqlite3")
    assert load_settings().database.path == Path("named.sqlite3")
    monkeypatch.delenv("BOT_DB_PATH")
    assert load_settings().database.path == Path("generic.sqlite3")


def test_list_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_CIVITAI__CURRENCIES", '["yellow", "blue"]')
    assert load_settings().civitai.currencies == ["yellow", "blue"]


def test_config_path_from_bot_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[civitai]\nwait_seconds = 7\n", "elsewhere.toml")
    monkeypatch.setenv("BOT_CONFIG", str(path))
    assert load_settings().civitai.wait_seconds == 7


def test_default_config_toml_in_the_working_directory(tmp_path: Path) -> None:
    write(tmp_path, "[civitai]\nwait_seconds = 9\n")
    assert load_settings().civitai.wait_seconds == 9


@pytest.mark.parametrize(
    ("toml", "env", "key", "var"),
    [
        (
            "[civitai]\nwait_seconds = 1000\n",
            {},
            "civitai.wait_seconds",
            "BOT_CIVITAI__WAIT_SECONDS",
        ),
        ('[civitai]\nbase_url = "ftp://x"\n', {}, "civitai.base_url", "CIVITAI_BASE_URL"),
        (
            '[civitai]\ncurrencies = ["gold"]\n',
            {},
            "civitai.currencies.0",
            "BOT_CIVITAI__CURRENCIES",
        ),
        (
            '[defaults]\nallowance_period = "hourly"\n',
            {},
            "defaults.allowance_period",
            "BOT_DEFAULTS__ALLOWANCE_PERIOD",
        ),
        ("", {"BOT_DEV_GUILD": "not-a-number"}, "discord.dev_guild", "BOT_DEV_GUILD"),
        ("", {"BOT_CIVITAI__MAX_RETRIES": "99"}, "civitai.max_retries", "BOT_CIVITAI__MAX_RETRIES"),
        ("", {"BOT_SIMULATOR__SPEED": "0"}, "simulator.speed", "BOT_SIMULATOR__SPEED"),
        (
            '[defaults]\ndefault_model = "gpt-image2"\n',
            {},
            "defaults.default_model",
            "BOT_DEFAULTS__DEFAULT_MODEL",
        ),
        (
            "[defaults]\nper_member_concurrency = 20\n",
            {},
            "defaults.per_guild_concurrency",
            "BOT_DEFAULTS__PER_GUILD_CONCURRENCY",
        ),
    ],
)
def test_invalid_value_names_the_key_and_its_env_var(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    toml: str,
    env: dict[str, str],
    key: str,
    var: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, toml))
    message = str(caught.value)
    assert f"{key} (env {var})" in message
    assert message.count("(env ") == 1  # only the bad key is blamed


def test_every_bad_key_is_reported_at_once(tmp_path: Path) -> None:
    toml = "[civitai]\nwait_seconds = -1\nmax_retries = 100\n[jobs]\ndeadline_minutes = 0\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, toml))
    message = str(caught.value)
    for var in (
        "BOT_CIVITAI__WAIT_SECONDS",
        "BOT_CIVITAI__MAX_RETRIES",
        "BOT_JOBS__DEADLINE_MINUTES",
    ):
        assert var in message


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('[civitai]\ntokn = "x"\n', "civitai.tokn"),
        ('[civitia]\ntoken = "x"\n', "civitia"),
        ("wait_seconds = 5\n", "wait_seconds"),
    ],
)
def test_unknown_key_refused(tmp_path: Path, toml: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, toml))
    assert key in str(caught.value)
    assert "unknown setting" in str(caught.value)


def test_missing_explicit_config_file_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_settings(missing)
    monkeypatch.setenv("BOT_CONFIG", str(missing))
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_settings()


def test_broken_toml_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[civitai\nwait_seconds = \n"))


def test_a_config_file_that_cannot_be_read_is_one_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "config.toml"
    folder.mkdir()  # e.g. a volume mounted where the file was meant to be
    with pytest.raises(ConfigError, match="cannot read the config file: Is a directory"):
        load_settings(folder)


def test_tokens_are_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", DISCORD_SECRET)
    settings = load_settings(write(tmp_path, f'[civitai]\ntoken = "{CIVITAI_SECRET}"\n'))
    assert isinstance(settings.discord.token, SecretStr)
    assert isinstance(settings.civitai.token, SecretStr)
    for text in (repr(settings), str(settings), repr(settings.civitai), settings.model_dump_json()):
        assert DISCORD_SECRET not in text and CIVITAI_SECRET not in text


def test_token_in_a_bad_config_is_not_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIVITAI_TOKEN", CIVITAI_SECRET)
    toml = f'[discord]\ntoken = "{DISCORD_SECRET}"\n[civitai]\nwait_seconds = "soon"\n'
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, toml))
    assert DISCORD_SECRET not in str(caught.value) and CIVITAI_SECRET not in str(caught.value)


def test_blank_discord_token_is_a_problem(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[discord]\ntoken = "   "\n'))
    assert problems_for_running(settings)


def test_env_names() -> None:
    assert env_name("discord", "token") == "DISCORD_TOKEN"
    assert env_name("database", "path") == "BOT_DB_PATH"
    assert env_name("civitai", "wait_seconds") == "BOT_CIVITAI__WAIT_SECONDS"


def test_every_int_setting_is_reachable_through_its_env_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The name an error message gives must really set the key.
    defaults = Settings()
    checked = 0
    for section in defaults.sections():
        for key in type(getattr(defaults, section)).model_fields:
            value = getattr(getattr(defaults, section), key)
            if type(value) is not int or key == "port":
                continue
            wanted = value + 1 if key != "max_retries" else value - 1
            monkeypatch.setenv(env_name(section, key), str(wanted))
            assert getattr(getattr(load_settings(), section), key) == wanted, (section, key)
            monkeypatch.delenv(env_name(section, key))
            checked += 1
    assert checked >= 10


def test_the_example_config_documents_every_setting_and_its_environment_name():
    """config.example.toml is the admin's reference: each key appears with its env override."""
    import tomllib

    from bot.config import ENV_PREFIX, TOP_LEVEL, Settings, env_name

    example = Path(__file__).resolve().parents[1] / "config.example.toml"
    text = example.read_text()
    Settings(**tomllib.loads(text))  # and it is a valid configuration as it stands
    for key in TOP_LEVEL:
        assert f"\n{key} =" in text, f"{key} is undocumented"
        assert f"{ENV_PREFIX}{key.upper()}" in text, f"{key}: no env name"
    for section in Settings().sections():
        field = Settings.model_fields[section]
        assert field.annotation is not None
        for key in field.annotation.model_fields:
            assert f"[{section}]" in text
            assert f"{key} =" in text or f"# {key} =" in text, f"{section}.{key} is undocumented"
            assert env_name(section, key) in text, f"{section}.{key}: no env name"


@pytest.mark.parametrize("value", ["yellow,blue", " yellow , blue ", '["yellow", "blue"]'])
def test_list_settings_from_the_environment_as_json_or_comma_separated(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_CIVITAI__CURRENCIES", value)
    assert load_settings().civitai.currencies == ["yellow", "blue"]


def test_a_malformed_list_setting_names_the_variable_and_shows_an_example(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOT_CIVITAI__CURRENCIES", '["yellow", purple')
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert "BOT_CIVITAI__CURRENCIES" in text and "comma-separated, e.g." in text


def test_the_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_LOGGING__LEVEL", "warning")
    assert load_settings().logging.level == "WARNING"


def test_the_openai_lane_from_its_named_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert settings.provider == "civitai" and settings.openai.partial_images == 2
    monkeypatch.setenv("BOT_PROVIDER", "openai")
    assert load_settings().simulated  # no OPENAI_API_KEY: its simulator
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-SECRET")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9999/v1/")
    settings = load_settings()
    assert settings.provider == "openai" and not settings.simulated
    assert settings.openai.base_url == "http://127.0.0.1:9999/v1"
    assert "sk-test-SECRET" not in repr(settings)
    assert env_name("openai", "api_key") == "OPENAI_API_KEY"


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('provider = "midjourney"', "provider (env BOT_PROVIDER)"),
        ("[openai]\npartial_images = 4", "openai.partial_images (env BOT_OPENAI__PARTIAL_IMAGES)"),
        ('[openai]\nmodels = ["gpt-5"]', "unknown model(s) gpt-5"),
        ('[openai]\nprices = { "gpt-image-1" = -3 }', "whole number of Buzz"),
        ('[openai]\nprices = { "gpt-image-1" = { ultra = 3 } }', "no quality 'ultra'"),
    ],
)
def test_bad_openai_settings_name_the_key(tmp_path: Path, toml: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, toml))
    assert words in str(caught.value)


def test_openai_prices_from_toml(tmp_path: Path) -> None:
    text = '[openai]\nprices = { "gpt-image-1-mini" = { low = 5, high = 70 }, "dall-e-2" = 200 }'
    settings = load_settings(write(tmp_path, text))
    assert settings.openai.prices == {"gpt-image-1-mini": {"low": 5, "high": 70}, "dall-e-2": 200}


def test_the_default_model_is_one_the_bot_knows(tmp_path: Path) -> None:
    """Checked when the settings load (check-config), not at the first /imagine; the command
    spelling of gpt-image-1.5 is accepted and stored as the model's name."""
    settings = load_settings(write(tmp_path, '[defaults]\ndefault_model = "GPT-Image-1-5"\n'))
    assert settings.defaults.default_model == "gpt-image-1.5"
    with pytest.raises(ConfigError, match="unknown model 'sdxl': use one of gpt-image-2"):
        load_settings(write(tmp_path, '[defaults]\ndefault_model = "sdxl"\n'))


@pytest.mark.parametrize(
    ("var", "key", "url"),
    [
        ("CIVITAI_BASE_URL", "civitai.base_url", "https://opuser:hunter2pass@orch.example.com"),
        ("CIVITAI_BASE_URL", "civitai.base_url", "https://opuser@orch.example.com"),
        ("OPENAI_BASE_URL", "openai.base_url", "https://opuser:hunter2pass@api.example.com/v1"),
        ("OPENAI_BASE_URL", "openai.base_url", "https://opuser:hunter2#pass@api.example.com/v1"),
    ],
)
def test_credentials_in_an_endpoint_url_are_refused_never_shown(
    monkeypatch: pytest.MonkeyPatch, var: str, key: str, url: str
) -> None:
    """The HTTP client sends a URL's user:password@ as Basic auth, replacing the Bearer token:
    every request would be refused (401) and every job fail. Refused at start, naming the key
    and never quoting the value."""
    monkeypatch.setenv(var, url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"{key} (env {var})" in message and "user:password@" in message
    assert "hunter2" not in message and "opuser" not in message


@pytest.mark.parametrize(
    ("var", "key", "remote"),
    [
        ("CIVITAI_BASE_URL", "civitai.base_url", "http://orchestration.civitai.com"),
        ("OPENAI_BASE_URL", "openai.base_url", "http://api.openai.com/v1"),
    ],
)
def test_a_plain_http_endpoint_url_off_this_machine_is_refused(
    monkeypatch: pytest.MonkeyPatch, var: str, key: str, remote: str
) -> None:
    """http:// is for the simulator on this machine: to any other host the API token would
    cross the network in clear (a typo of https, answered with a redirect only after the
    token was sent). Refused at start, naming the key, never quoting the value."""
    monkeypatch.setenv(var, remote)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert f"{key} (env {var})" in str(caught.value)
    assert "https://" in str(caught.value) and remote not in str(caught.value)
    section = key.split(".")[0]
    for local in ("http://127.0.0.1:8800", "http://localhost:9000", "http://[::1]:9000"):
        monkeypatch.setenv(var, local)
        assert getattr(load_settings(), section).base_url == local


@pytest.mark.parametrize(
    ("var", "key"),
    [
        ("DISCORD_TOKEN", "discord.token"),
        ("CIVITAI_TOKEN", "civitai.token"),
        ("OPENAI_API_KEY", "openai.api_key"),
    ],
)
@pytest.mark.parametrize("stray", ["\u2019", " ", "\u00a0", "\t"])
def test_a_token_with_a_character_no_http_header_can_carry_is_refused_never_shown(
    monkeypatch: pytest.MonkeyPatch, var: str, key: str, stray: str
) -> None:
    """Pasted with a typographic quote or a space inside, a token cannot be sent as a header:
    every orchestrator request raised UnicodeEncodeError (a traceback from `quote --whatif`,
    each job's task failing at run time). Refused when the settings load, naming the key."""
    monkeypatch.setenv(var, f"{CIVITAI_SECRET}{stray}Zq9xW")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"{key} (env {var})" in message
    assert CIVITAI_SECRET not in message and "Zq9xW" not in message


@pytest.mark.parametrize(
    ("var", "key"),
    [
        ("BOT_METRIC__PORT", "metric.port"),  # the section misspelt: metrics stayed off
        ("BOT_CIVITIA__WHATIF", "civitia.whatif"),
        ("bot_jobs_deadline__minutes", "jobs_deadline.minutes"),
    ],
)
def test_an_environment_variable_for_an_unknown_section_is_refused(
    monkeypatch: pytest.MonkeyPatch, var: str, key: str
) -> None:
    """A misspelt key in a known section was refused (BOT_CIVITAI__WHATFI); a misspelt section
    was ignored without a word, and check-config said "configuration OK"."""
    monkeypatch.setenv(var, "9464")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert f"{key} (env {var.upper()}): unknown setting" in str(caught.value)


def test_an_unknown_section_in_the_environment_is_listed_with_the_other_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOT_METRIC__PORT", "9464")
    monkeypatch.setenv("BOT_CIVITAI__WAIT_SECONDS", "1000")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "metric.port (env BOT_METRIC__PORT)" in message
    assert "civitai.wait_seconds (env BOT_CIVITAI__WAIT_SECONDS)" in message


@pytest.mark.parametrize(
    ("var", "value", "prefix"),
    [
        ("DISCORD_TOKEN", f"Bot {DISCORD_SECRET}", "Bot"),
        ("CIVITAI_TOKEN", f"Bearer {CIVITAI_SECRET}", "Bearer"),
    ],
)
def test_a_token_given_with_its_header_prefix_says_to_drop_the_prefix(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, prefix: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"starts with '{prefix} '" in message and "the token alone" in message
    assert DISCORD_SECRET not in message and CIVITAI_SECRET not in message


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("BOT_OPENAI__PRICES", '{"dall-e-2": 200'),
        ("BOT_OPENAI__PRICES", "dall-e-2=200"),
    ],
)
def test_a_malformed_table_setting_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    """The message named the section ('field "openai"') and showed how to write a list, with
    another variable as the example: the operator could not tell which variable was wrong."""
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"{var} is not valid JSON" in message
    assert '{"gpt-image-1-mini": 20}' in message  # how a table is written


def test_an_openai_compatible_server_on_a_private_network_may_use_plain_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A self-hosted OpenAI-compatible server is often reached over http on the host's own
    network (a compose service name, a LAN address): refusing it stopped working set-ups.
    A public name over http is still refused; the Civitai URL stays loopback-only."""
    for private in (
        "http://localai:8080/v1",
        "http://10.0.0.5:8080/v1",
        "http://192.168.1.20/v1",
        "http://images.internal/v1",
        "http://gpu-box.local:8000/v1",
    ):
        monkeypatch.setenv("OPENAI_BASE_URL", private)
        assert load_settings().openai.base_url == private
    for public in ("http://api.openai.com/v1", "http://8.8.8.8/v1"):
        monkeypatch.setenv("OPENAI_BASE_URL", public)
        with pytest.raises(ConfigError) as caught:
            load_settings()
        assert "openai.base_url (env OPENAI_BASE_URL)" in str(caught.value)
        assert "private network" in str(caught.value)
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.setenv("CIVITAI_BASE_URL", "http://10.0.0.5:8800")
    with pytest.raises(ConfigError):
        load_settings()


def test_an_in_memory_database_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """BOT_DB_PATH=:memory: (tried for a quick test run): the bot started, each of its
    connections on a database of its own (reads failed with "no such table" while writes
    went elsewhere), and every balance was gone at the next start."""
    monkeypatch.setenv("BOT_DB_PATH", ":memory:")
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, ""))
    message = str(caught.value)
    assert "database.path (env BOT_DB_PATH)" in message and "file" in message
