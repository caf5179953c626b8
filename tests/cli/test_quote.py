"""`python -m bot quote` and `check-config`, run as a member of the public would: subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.civitai.schema import OpenApiDocument
from bot.civitai.simulator import Simulator

ROOT = Path(__file__).resolve().parents[2]
FIVE = "gpt-image-2, gpt-image-1.5, gpt-image-1, dall-e-3, dall-e-2"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any bot setting: no tokens, no config file."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BOT_", "CIVITAI_", "DISCORD_", "OPENAI_"))
    }
    return {**env, **extra}


def bot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=ROOT,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def bots(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Several invocations at once (each is a fresh interpreter: run them side by side)."""
    procs = [
        (
            command,
            subprocess.Popen(
                [sys.executable, "-m", "bot", *command],
                cwd=ROOT,
                env=clean_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            ),
        )
        for command in commands
    ]
    done = []
    for command, proc in procs:
        stdout, stderr = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(command, proc.returncode, stdout, stderr))
    return done


def quote_json(*args: str) -> dict[str, Any]:
    done = bot("quote", *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def no_config_file() -> None:
    assert not (ROOT / "config.toml").exists(), "a config.toml in the repo root would leak in"


def test_the_issue_example(no_config_file: None) -> None:
    done = bot(
        "quote", "gpt-image-2", "--size", "1920x1072", "--quality", "high", "--quantity", "2"
    )
    assert done.returncode == 0, done.stderr
    first, _, rest = done.stdout.partition("\n")
    assert first == "416 Buzz"
    step = json.loads(rest)
    assert step["$type"] == "imageGen"
    assert step["input"] == {
        "engine": "openai",
        "model": "gpt-image-2",
        "operation": "createImage",
        "prompt": step["input"]["prompt"],
        "width": 1920,
        "height": 1072,
        "quantity": 2,
        "quality": "high",
    }
    assert step["input"]["prompt"]
    assert OpenApiDocument.load().validate_input(step["input"]) == []


def test_json_shape(no_config_file: None) -> None:
    out = quote_json(
        "dall-e-3", "--quality", "hd", "--style", "natural", "--prompt", "a quiet lake"
    )
    assert set(out) == {"model", "operation", "buzz", "step", "warnings"}
    assert out["model"] == "dall-e-3" and out["operation"] == "createImage"
    assert out["buzz"] == 300 and isinstance(out["buzz"], int)
    assert out["warnings"] == []
    assert out["step"]["input"]["style"] == "natural"
    assert out["step"]["input"]["prompt"] == "a quiet lake"


def test_warnings_travel_in_json_and_on_stderr(no_config_file: None) -> None:
    out = quote_json("gpt-image-2", "--size", "3840x1024")
    assert len(out["warnings"]) == 1 and "3:1" in out["warnings"][0]
    done = bot("quote", "gpt-image-2", "--size", "3840x1024")
    assert done.returncode == 0
    assert done.stdout.startswith("533 Buzz\n")
    assert "warning:" in done.stderr and "3:1" in done.stderr


def test_invalid_input_exits_2_with_field_errors(no_config_file: None) -> None:
    done = bot(
        "quote",
        "gpt-image-1.5",
        "--size",
        "1792x1024",
        "--quantity",
        "5",
        "--style",
        "vivid",
        "--json",
    )
    assert done.returncode == 2
    body = json.loads(done.stdout)
    assert set(body) == {"errors"}
    fields = {e["field"]: e["message"] for e in body["errors"]}
    assert set(fields) == {"size", "quantity", "style"}
    assert all(set(e) == {"field", "message"} for e in body["errors"])
    assert fields["size"] == "size must be one of 1024x1024, 1536x1024, 1024x1536 for gpt-image-1.5"
    assert fields["quantity"] == "quantity must be between 1 and 4 for gpt-image-1.5"


def test_invalid_input_without_json_says_so_on_stderr(no_config_file: None) -> None:
    done = bot("quote", "gpt-image-2", "--size", "1920x1080")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "multiple of 16" in done.stderr and "1920x1072 (208 Buzz)" in done.stderr


def test_unknown_model_lists_the_five(no_config_file: None) -> None:
    done = bot("quote", "gpt-5", "--json")
    assert done.returncode == 2
    (error,) = json.loads(done.stdout)["errors"]
    assert error["field"] == "model" and FIVE in error["message"]
    plain = bot("quote", "midjourney")
    assert plain.returncode == 2 and FIVE in plain.stderr


@pytest.mark.parametrize(
    ("model", "extra", "source_field", "mask_field"),
    [
        ("gpt-image-2", ["--input-size", "1024x1024"], "images", "maskImage"),
        ("gpt-image-1", [], "images", "mask"),
        ("dall-e-2", [], "image", "mask"),
    ],
)
def test_edit_with_mask_shows_the_attachments(
    no_config_file: None, model: str, extra: list[str], source_field: str, mask_field: str
) -> None:
    out = quote_json(model, "--edit", "--mask", *extra)
    inp = out["step"]["input"]
    assert out["operation"] == "editImage" and inp["operation"] == "editImage"
    expected_source = (
        ["attachment://image1.png"] if source_field == "images" else "attachment://image1.png"
    )
    assert inp[source_field] == expected_source
    assert inp[mask_field] == "attachment://mask.png"
    assert not ({"mask", "maskImage"} - {mask_field}) & set(inp)  # never both spellings


def test_mask_refused_for_gpt15(no_config_file: None) -> None:
    done = bot("quote", "gpt-image-1.5", "--edit", "--mask", "--json")
    assert done.returncode == 2
    (error,) = json.loads(done.stdout)["errors"]
    assert error["field"] == "mask" and "gpt-image-2" in error["message"]


def test_input_size_drives_the_gpt2_edit_price(no_config_file: None) -> None:
    sizes = ("1024x1024", "1920x1080", "3840x2160")
    edit = ["quote", "gpt-image-2", "--edit", "--json"]
    *priced, no_size, bad, empty = bots(
        *([*edit, "--input-size", size] for size in sizes),
        edit,  # no size at all: refused, not guessed
        [*edit, "--input-size", "huge"],
        [*edit, "--input-size", "0x0"],  # no image has no pixels: refused, not priced
    )
    assert [json.loads(p.stdout)["buzz"] for p in priced] == [286, 208, 533]
    assert no_size.returncode == 2
    assert json.loads(no_size.stdout)["errors"][0]["field"] == "size"
    for refused in (bad, empty):
        assert refused.returncode == 2
        assert json.loads(refused.stdout)["errors"][0]["field"] == "input-size"


def test_whatif_prints_the_built_in_simulators_figure(no_config_file: None) -> None:
    done = bot("quote", "gpt-image-2", "--size", "1920x1072", "--quantity", "2", "--whatif")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "416 Buzz (orchestrator whatif: 416 Buzz)"
    out = quote_json("dall-e-2", "--quantity", "3", "--whatif")
    assert out["whatif"] == out["buzz"] == 900


async def test_whatif_asks_the_configured_orchestrator(
    no_config_file: None, openapi: OpenApiDocument
) -> None:
    async with Simulator(token="cli-whatif-token", speed=0.01, document=openapi) as sim:
        env = clean_env(CIVITAI_TOKEN=sim.token, CIVITAI_BASE_URL=sim.base_url)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bot", "quote", "gpt-image-1", "--quality", "medium", "--quantity", "3"),
            *("--whatif", "--json"),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
        assert proc.returncode == 0, stderr.decode()
        out = json.loads(stdout)
        assert out["whatif"] == 300 == out["buzz"]
        assert sim.requests["submit"] == 1  # it really asked
        assert sim.submissions == [] and sim.workflows == {}  # and created nothing


def test_whatif_failure_exits_1(no_config_file: None) -> None:
    env = clean_env(
        CIVITAI_TOKEN="x" * 20, CIVITAI_BASE_URL="http://127.0.0.1:9", BOT_CIVITAI__MAX_RETRIES="0"
    )
    done = bot("quote", "dall-e-2", "--whatif", env=env)
    assert done.returncode == 1
    assert "whatif failed" in done.stderr
    assert "x" * 20 not in done.stderr


# -- check-config --------------------------------------------------------------------------------


def test_check_config_without_discord_token_fails(no_config_file: None, tmp_path: Path) -> None:
    done = bot("check-config", env=clean_env(BOT_DB_PATH=str(tmp_path / "bot.sqlite3")))
    assert done.returncode != 0
    assert "DISCORD_TOKEN" in done.stderr
    assert "simulator" in done.stdout


def test_check_config_with_discord_token_passes(no_config_file: None, tmp_path: Path) -> None:
    token = "discord-token-for-check-config-123"
    env = clean_env(DISCORD_TOKEN=token, BOT_DB_PATH=str(tmp_path / "bot.sqlite3"))
    done = bot("check-config", env=env)
    assert done.returncode == 0, done.stderr
    assert "configuration OK" in done.stdout
    assert token not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("var", "url"),
    [
        ("CIVITAI_BASE_URL", "https://admin:hunter2pass@orch.example.com"),
        ("CIVITAI_BASE_URL", "https://admin:hunter2#pass@orch.example.com"),
        ("CIVITAI_BASE_URL", "https://admin:hunter2/pass@orch.example.com"),
        ("OPENAI_BASE_URL", "https://admin:hunter2?pass@api.example.com/v1"),
        ("CIVITAI_BASE_URL", "https://admin:hunter2pass@[orch.example.com"),
    ],
)
def test_credentials_in_an_endpoint_url_are_a_bad_setting_never_shown(
    no_config_file: None, tmp_path: Path, var: str, url: str
) -> None:
    """A user:password@ in the URL is sent as Basic auth in place of the Bearer token (every
    request refused with 401); one with a # / ? in it was shown as the host or quoted as a
    port in a traceback. Such a URL is refused like any bad setting, without quoting it."""
    env = clean_env(
        DISCORD_TOKEN="t" * 30,
        CIVITAI_TOKEN="civitai-token-for-check-config-456",
        BOT_DB_PATH=str(tmp_path / "bot.sqlite3"),
        **{var: url},
    )
    for command in (["check-config"], ["quote", "gpt-image-2", "--whatif"], ["run"]):
        done = bot(*command, env=env)
        shown = done.stdout + done.stderr
        assert done.returncode != 0 and "Traceback" not in shown, shown
        assert var in done.stderr and "user:password@" in done.stderr, done.stderr
        assert "hunter2" not in shown and "pass@" not in shown and "admin" not in shown, shown


def test_check_config_says_which_lane_is_active(no_config_file: None, tmp_path: Path) -> None:
    db = str(tmp_path / "bot.sqlite3")
    done = bot("check-config", env=clean_env(DISCORD_TOKEN="t" * 30, BOT_DB_PATH=db))
    assert "lane:         civitai" in done.stdout, done.stdout
    key = "sk-check-config-SECRET-0123456789"
    env = clean_env(
        DISCORD_TOKEN="t" * 30,
        BOT_DB_PATH=db,
        BOT_PROVIDER="openai",
        OPENAI_API_KEY=key,
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
    )
    done = bot("check-config", env=env)
    assert done.returncode == 0, done.stderr
    assert "lane:         openai" in done.stdout
    assert "endpoint at http://127.0.0.1:9/v1" in done.stdout
    assert key not in done.stdout + done.stderr
    done = bot("check-config", env={**env, "OPENAI_API_KEY": ""})
    assert "simulator (no OPENAI_API_KEY" in done.stdout


def test_check_config_reports_a_bad_setting(no_config_file: None, tmp_path: Path) -> None:
    env = clean_env(DISCORD_TOKEN="t" * 30, BOT_CIVITAI__WAIT_SECONDS="9999")
    done = bot("check-config", env=env)
    assert done.returncode != 0
    assert "civitai.wait_seconds" in done.stderr and "BOT_CIVITAI__WAIT_SECONDS" in done.stderr


def test_check_config_with_a_missing_explicit_file(no_config_file: None, tmp_path: Path) -> None:
    done = bot("--config", str(tmp_path / "nope.toml"), "check-config")
    assert done.returncode != 0
    assert "nope.toml" in done.stderr
