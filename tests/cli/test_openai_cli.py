"""`python -m bot openai-models` and `python -m bot audit`, run as an operator would."""

from __future__ import annotations

import json
from pathlib import Path

from bot.openai_api.switch import ModelSwitch
from bot.store import audit
from bot.store.db import Database, utcnow
from bot.store.state import BotState
from tests.cli.test_quote import ROOT, bot, clean_env


def setup_module() -> None:
    assert not (ROOT / "config.toml").exists(), "a config.toml in the repo root would leak in"


async def test_openai_models_lists_why_a_model_is_not_offered_and_switches_one_on(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "bot.sqlite3"
    async with Database(db_path) as db:
        await BotState(db).set("openai.disabled_models", json.dumps({"dall-e-2": "404 gone"}))
    env = clean_env(
        BOT_DB_PATH=str(db_path), BOT_PROVIDER="openai", BOT_OPENAI__MODELS="gpt-image-2,dall-e-2"
    )
    done = bot("openai-models", env=env)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert lines["gpt-image-2"] == "offered"
    assert lines["dall-e-2"] == "switched off: 404 gone"
    assert lines["gpt-image-1"] == "not served (openai.models)"
    done = bot("openai-models", "--enable", "dall-e-2", env=env)
    assert "dall-e-2 is switched on again" in done.stdout
    assert "dall-e-2           offered" in done.stdout
    every = {k: v for k, v in env.items() if k != "BOT_OPENAI__MODELS"}
    done = bot("openai-models", env=every)
    assert "gpt-image-1-mini   no Buzz price (openai.prices)" in done.stdout


async def test_an_enable_from_the_shell_survives_the_running_bot_switching_another_off(
    tmp_path: Path,
) -> None:
    # The running bot loaded its switch before the operator's --enable; its next switch-off
    # must not write its old copy back (after a restart, dall-e-2 would be off again).
    db_path = tmp_path / "bot.sqlite3"
    env = clean_env(BOT_DB_PATH=str(db_path), BOT_PROVIDER="openai")
    async with Database(db_path) as db:
        running = ModelSwitch(BotState(db))
        await running.disable("dall-e-2", "404 gone")
        done = bot("openai-models", "--enable", "dall-e-2", env=env)
        assert "dall-e-2 is switched on again" in done.stdout, done.stderr
        await running.disable("gpt-image-1", "404 deprecated")
        live = running.why_off("dall-e-2")
    async with Database(db_path) as db:
        after_restart = await ModelSwitch.load(BotState(db))
    assert after_restart.disabled == {"gpt-image-1": "404 deprecated"}
    assert live is None  # and the running bot offers it again from then on


async def test_audit_exports_usage_for_reconciling_with_the_bill(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "bot.sqlite3"
    usage = {"total_tokens": 1968, "output_tokens": 1768}
    async with Database(db_path) as db:
        await db.write(
            audit.record, utcnow(), "upstream.usage", guild_id=7, target="j1", usage=usage
        )
        await db.write(audit.record, utcnow(), "ledger.grant", guild_id=7, target="m1")
    env = clean_env(BOT_DB_PATH=str(db_path))
    done = bot("audit", "--action", "upstream.usage", env=env)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    event = json.loads(line)
    assert event["target"] == "j1" and event["details"]["usage"] == usage
    done = bot("audit", "--csv", env=env)
    rows = done.stdout.splitlines()
    assert rows[0].startswith("id,created_at,guild_id") and len(rows) == 3
