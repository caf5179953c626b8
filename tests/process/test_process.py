"""The bot as a process: SIGTERM is an orderly stop that loses nothing, health needs no
token, and the problems an operator can make are one line each, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from bot.civitai.simulator import Outcome, Simulator
from bot.heartbeat import heartbeat_path
from bot.openai_api.simulator import OpenAISimulator
from tests.cli.test_quote import ROOT, bot, clean_env
from tests.fakes import FakeDiscord
from tests.store.read_only import write_locked

RUNNER = Path(__file__).with_name("fake_run.py")


@dataclass
class Deployment:
    fake: FakeDiscord
    sim: Simulator
    db: Path
    guild: int
    channel: int
    member: int

    def env(self, **extra: str) -> dict[str, str]:
        """The deployment's environment; `extra` adds settings or replaces these."""
        settings = {
            "FAKE_API_BASE": self.fake.api_base,
            "FAKE_GATEWAY": self.fake.gateway_url,
            "DISCORD_TOKEN": self.fake.bot_token,
            "CIVITAI_BASE_URL": self.sim.base_url,
            "CIVITAI_TOKEN": self.sim.token,
            "BOT_DB_PATH": str(self.db),
            "BOT_DEV_GUILD": str(self.guild),
            "PYTHONPATH": str(ROOT),
        }
        return clean_env(**{**settings, **extra})

    async def start(self, **extra: str) -> asyncio.subprocess.Process:
        """`python -m bot run` in its own process; returns once its heartbeat says ready."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(RUNNER),
            "run",
            cwd=ROOT,
            env=self.env(**extra),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        beat = heartbeat_path(self.db)
        async with asyncio.timeout(30):
            while not (beat.exists() and '"ready": true' in beat.read_text()):
                if proc.returncode is not None:
                    _, err = await proc.communicate()
                    raise AssertionError(f"the bot exited {proc.returncode}: {err.decode()}")
                await asyncio.sleep(0.05)
        return proc

    def job(self) -> tuple[str, str]:
        with sqlite3.connect(self.db) as conn:
            found = conn.execute("SELECT id, status FROM jobs").fetchall()
        assert len(found) == 1, found
        return found[0]


@asynccontextmanager
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with FakeDiscord() as fake, Simulator(speed=0.01, seed=3) as sim:
        guild = fake.add_guild("Images")
        channel = fake.add_channel(guild, "art")
        member = fake.add_member(guild, "alice")
        yield Deployment(fake, sim, tmp_path / "data" / "bot.sqlite3", guild, channel, member)


async def said(proc: asyncio.subprocess.Process, words: str) -> str:
    """The bot's stderr up to the line with `words`, or to its end if it exits first."""
    seen = []
    assert proc.stderr is not None
    async with asyncio.timeout(10):
        while line := (await proc.stderr.readline()).decode():
            seen.append(line)
            if words in line:
                break
    return "".join(seen)


async def sigterm(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):  # what `docker stop` waits before SIGKILL
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_sigterm_stops_in_order_and_a_restart_finishes_the_job(tmp_path):
    async with deployment(tmp_path) as d:
        first = await d.start()
        # A grant from the command line while the bot runs, as an admin would give it.
        grant = await asyncio.to_thread(
            bot,
            "ledger",
            "grant",
            str(d.guild),
            str(d.member),
            "500",
            "--reason",
            "test",
            env=d.env(),
        )
        assert grant.returncode == 0, grant.stderr
        d.sim.script(Outcome(runtime=300), prompt="a slow lighthouse")  # 3 s here
        await d.fake.slash(
            d.guild,
            d.channel,
            d.member,
            "create gpt-image-2",
            options={"prompt": "a slow lighthouse", "quality": "low"},
        )
        async with asyncio.timeout(15):
            while not d.sim.workflows:
                await asyncio.sleep(0.05)
        code, err = await sigterm(first)
        assert code == 0, err
        assert "Traceback" not in err
        job_id, status = d.job()
        assert status in ("queued", "submitted", "running"), "left as it was, to resume"
        wal = d.db.with_name(d.db.name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0, "the WAL was checkpointed"
        health = bot("health", env=clean_env(BOT_DB_PATH=str(d.db)))  # no DISCORD_TOKEN
        assert health.returncode == 1 and "stopped" in health.stderr

        second = await d.start()
        async with asyncio.timeout(30):
            while d.job()[1] != "done":
                await asyncio.sleep(0.1)
        results = [
            m
            for m in d.fake.channel_messages(d.channel)
            for e in m.get("embeds", [])
            if f"result of job {job_id}" in ((e.get("footer") or {}).get("text") or "")
        ]
        assert len(results) == 1, "posted exactly once"
        code, err = await sigterm(second)
        assert code == 0 and "Traceback" not in err


async def test_a_dev_guild_the_bot_cannot_reach_is_one_line(tmp_path):
    async with deployment(tmp_path) as d:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(RUNNER),
            "run",
            cwd=ROOT,
            env={**d.env(), "BOT_DEV_GUILD": "123456789012345678"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
        text = err.decode()
        assert proc.returncode == 1
        assert "Traceback" not in text
        [line] = [x for x in text.splitlines() if x.startswith("error:")]
        assert "123456789012345678" in line and "BOT_DEV_GUILD" in line and "50001" in line


def test_health_needs_no_token(tmp_path):
    db = tmp_path / "bot.sqlite3"
    env = clean_env(BOT_DB_PATH=str(db))
    assert bot("ledger", "grant", "1", "2", "5", "--reason", "setup", env=env).returncode == 0
    missing = bot("health", env=env)
    assert missing.returncode == 1 and "no heartbeat" in missing.stderr
    assert "DISCORD_TOKEN" not in missing.stderr


def test_a_database_under_a_file_is_one_line(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    result = bot(
        "run",
        env=clean_env(BOT_DB_PATH=str(tmp_path / "data" / "bot.sqlite3"), DISCORD_TOKEN="x" * 40),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot create the database folder {tmp_path / 'data'}: "
        f"{tmp_path / 'data'} is a file, not a folder (check BOT_DB_PATH)"
    ]


@pytest.mark.parametrize("lane", [{}, {"BOT_PROVIDER": "openai"}], ids=["civitai", "openai"])
def test_a_simulator_port_in_use_is_one_line(tmp_path, lane):
    """Without an upstream token the bot serves its own simulator on BOT_SIMULATOR__PORT: a
    port another program holds is the operator's to change, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(
            BOT_DB_PATH=str(tmp_path / "bot.sqlite3"),
            DISCORD_TOKEN="x" * 40,
            BOT_SIMULATOR__PORT=str(port),
            **lane,
        )
        result = bot("run", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert f"127.0.0.1:{port}" in line and "BOT_SIMULATOR__PORT" in line


CHECK_AS_NOBODY = """
import os, sys
from pathlib import Path
from bot.cli import main
from bot.store.location import check_writable  # imported while root may still read it
os.setegid(65534)
os.seteuid(65534)
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another uid")
@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize("where", ["folder", "file", "lock", "journal"])
def test_a_database_owned_by_another_uid_names_the_uid_that_needs_access(where, command):
    """As in a bind mount owned by root while the container runs as uid 10001. "lock": the
    database was chowned as advised, but the lock file a run as root left beside it was not
    (a PermissionError traceback). "journal": a run as root that was killed left its -wal and
    -shm: the bot started with a database it could not write (every write refused).
    check-config said "configuration OK" for the file, the lock and the journal (only the
    folder was looked at), and named no uid: `run` then refused to start."""
    # Not under pytest's tmp_path: its folders are private to root, all the way up.
    top = Path(tempfile.mkdtemp(prefix="bot-perm-"))
    top.chmod(0o755)
    folder = top / "mount"
    folder.mkdir()
    db = folder / "bot.sqlite3"
    sqlite3.connect(db).close()
    if where == "folder":
        folder.chmod(0o755)  # others may read, not write
    elif where == "file":
        folder.chmod(0o777)
        db.chmod(0o644)
    elif where == "lock":
        folder.chmod(0o777)
        db.chmod(0o666)
        db.with_name(db.name + ".lock").touch(0o644)
    else:
        db.unlink()
        killed = "import asyncio, os, sys; from bot.store.db import Database\n"
        killed += "async def main():\n    await Database(sys.argv[1]).open()\n    os._exit(0)\n"
        killed += "asyncio.run(main())"
        subprocess.run([sys.executable, "-c", killed, str(db)], cwd=ROOT, check=True)
        assert db.with_name(db.name + "-wal").exists()
        folder.chmod(0o777)
        db.chmod(0o666)
    try:
        result = subprocess.run(
            [sys.executable, "-c", CHECK_AS_NOBODY, command],
            cwd=ROOT,
            env=clean_env(BOT_DB_PATH=str(db), DISCORD_TOKEN="x" * 40, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(top)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "owned by uid 0" in line and "runs as uid 65534" in line
    assert str(folder if where == "folder" else db) in line


async def test_sigterm_lets_an_openai_call_under_way_finish(tmp_path):
    """The OpenAI lane's call cannot be picked up after a restart (it would be made, and paid
    for upstream, again): SIGTERM waits for it to finish and be stored, then exits 0."""
    sim = OpenAISimulator(api_key="sk-sim-drain", speed=0.002, seed=5, max_image_side=128)
    await sim.start()
    try:
        async with deployment(tmp_path) as d:
            openai = {
                "BOT_PROVIDER": "openai",
                "OPENAI_API_KEY": "sk-sim-drain",
                "OPENAI_BASE_URL": sim.base_url,
            }
            first = await d.start(**openai)
            grant = await asyncio.to_thread(
                bot,
                "ledger",
                "grant",
                str(d.guild),
                str(d.member),
                "500",
                "--reason",
                "t",
                env=d.env(),
            )
            assert grant.returncode == 0, grant.stderr
            gate = sim.hold_final_images()
            await d.fake.slash(
                d.guild,
                d.channel,
                d.member,
                "create gpt-image-2",
                options={"prompt": "a lighthouse", "quality": "low", "size": "1024x1024"},
            )
            async with asyncio.timeout(15):
                while not sim.requests["generations"]:
                    await asyncio.sleep(0.05)
            first.send_signal(signal.SIGTERM)
            await asyncio.sleep(1.0)
            assert first.returncode is None, "still waiting for the call"
            # An impatient operator presses Ctrl-C again: told the bot is stopping, not killed.
            first.send_signal(signal.SIGINT)
            seen = await said(first, "already stopping")
            gate.set()
            async with asyncio.timeout(10):
                _, err = await first.communicate()
            assert first.returncode == 0 and "Traceback" not in err.decode()
            assert "already stopping (SIGINT again)" in seen
            _, status = d.job()
            assert status in ("delivering", "done")

            second = await d.start(**openai)
            async with asyncio.timeout(30):
                while d.job()[1] != "done":
                    await asyncio.sleep(0.1)
            code, err2 = await sigterm(second)
            assert code == 0, err2
            assert sim.requests["generations"] == 1  # never made again
            with sqlite3.connect(d.db) as conn:
                lost = conn.execute(
                    "SELECT COUNT(*) FROM audit_events WHERE action = 'upstream.call_lost'"
                ).fetchone()[0]
                charged = conn.execute("SELECT charged FROM jobs").fetchone()[0]
            assert lost == 0 and charged > 0
    finally:
        await sim.stop()


async def test_tokens_read_with_a_trailing_newline_work(tmp_path):
    """A token kept in a file or a Kubernetes secret often ends in a newline: sent as it is, it
    made every orchestrator request fail as 'lost the orchestrator's answer' (the HTTP library
    refuses the header, in an error quoting it), retried for ever, never a word on the token."""
    async with deployment(tmp_path) as d:
        tokens = {"CIVITAI_TOKEN": d.sim.token + "\n", "DISCORD_TOKEN": d.fake.bot_token + "\n"}
        proc = await d.start(**tokens)
        await asyncio.to_thread(
            bot, "ledger", "grant", str(d.guild), str(d.member), "500", "--reason", "t", env=d.env()
        )
        options = {"prompt": "a lighthouse", "quality": "low"}
        await d.fake.slash(d.guild, d.channel, d.member, "create gpt-image-2", options)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                while not (d.sim.workflows and d.job()[1] == "done"):
                    await asyncio.sleep(0.1)
        code, err = await sigterm(proc)
        assert code == 0, err
        assert d.job()[1] == "done" and "LocalProtocolError" not in err, err
        assert d.sim.token not in err


async def test_discord_answering_502_at_login_is_one_line(tmp_path):
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(
            status=502, text="<html>502 Bad Gateway</html>", content_type="text/html"
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", bad_gateway)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with deployment(tmp_path) as d:
            env = {**d.env(), "FAKE_API_BASE": f"http://127.0.0.1:{port}/api/v10"}
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(RUNNER),
                "run",
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(90):  # discord.py retries a 5xx a few times first
                _, err = await proc.communicate()
    finally:
        await runner.cleanup()
    text = err.decode()
    assert proc.returncode == 1 and "Traceback" not in text
    [line] = [x for x in text.splitlines() if x.startswith("error:")]
    assert line == "error: Discord answered 502 while the bot logged in; try again later"


async def test_sigterm_while_logging_in_to_discord_is_an_orderly_stop(tmp_path):
    async with deployment(tmp_path) as d:
        d.fake.hold_requests("GET", r"/api/v10/users/@me$")  # Discord slow to answer the login
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(RUNNER),
            "run",
            cwd=ROOT,
            env=d.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            while not [c for c in d.fake.calls if c.path.endswith("/users/@me")]:
                await asyncio.sleep(0.05)
        code, err = await sigterm(proc)
        assert code == 0 and "Traceback" not in err, err
        wal = d.db.with_name(d.db.name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0, "the WAL was checkpointed"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (4004, "Discord refused the bot token (DISCORD_TOKEN)"),
        (4011, "BOT_DISCORD__SHARD_COUNT"),
    ],
)
async def test_discord_closing_the_gateway_for_good_is_one_line(tmp_path, code, words):
    """The token reset in the portal while the bot runs (4004), or the bot grown past the
    servers one connection may serve (4011): discord.py gives up and raised ConnectionClosed
    out of `run` as a traceback."""
    async with deployment(tmp_path) as d:
        proc = await d.start()
        for conn in list(d.fake.gateway.connections):
            await conn.close(code, "closed by the test")
        async with asyncio.timeout(30):
            _, err = await proc.communicate()
    text = err.decode()
    assert proc.returncode == 1 and "Traceback" not in text, text
    [line] = [x for x in text.splitlines() if x.startswith("error:")]
    assert words in line


async def test_a_second_sigterm_while_the_database_closes_is_ignored(tmp_path):
    """An impatient operator (or a supervisor) sends SIGTERM twice: the second arrived while the
    bot folded its WAL into the database on close, and killed it there (exit -15, the WAL left
    behind). It must let the close finish and exit 0."""
    async with deployment(tmp_path) as d:
        proc = await d.start()
        beat = heartbeat_path(d.db)
        # An operator's sqlite3 shell holds the write lock: the close's checkpoint waits for it.
        with write_locked(d.db):
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                while '"stopped": true' not in beat.read_text():  # the last step before the close
                    await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            seen = await said(proc, "already stopping")
        async with asyncio.timeout(15):
            _, rest = await proc.communicate()
        err = seen + rest.decode()
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        assert "already stopping" in err
        wal = d.db.with_name(d.db.name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0, "the WAL was checkpointed"


def _mount_tmpfs(where: Path, *options: str) -> bool:
    tool = shutil.which("mount")
    if tool is None or os.geteuid() != 0:
        return False
    opts = ",".join(("size=4m", *options))
    return subprocess.run([tool, "-t", "tmpfs", "-o", opts, "tmpfs", str(where)]).returncode == 0


@pytest.mark.parametrize("where", ["folder", "file", "subfolder"])
def test_a_database_on_a_read_only_mount_says_read_only(tmp_path, where):
    """A volume mounted read-only (`:ro` in compose, a filesystem remounted read-only after
    errors): the advice was to chown the folder, which cannot help (and fails: EROFS)."""
    folder = tmp_path / "mount"
    folder.mkdir()
    if not _mount_tmpfs(folder):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    db = folder / ("data/bot.sqlite3" if where == "subfolder" else "bot.sqlite3")
    try:
        if where == "file":
            sqlite3.connect(db).close()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        result = bot("run", env=clean_env(BOT_DB_PATH=str(db), DISCORD_TOKEN="x" * 40))
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "read-only" in line and str(folder) in line, line
    assert "chown" not in line, line
