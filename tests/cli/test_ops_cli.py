"""Operating the bot from the shell: backup, prune, and refusing the wrong database — each run
as a real `python -m bot` process on a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from bot.store.db import Conn, Database, newest_schema, utcnow
from bot.store.jobs import JobStatus, JobStore, NewJob, SourceImage
from bot.store.ledger import Ledger
from tests.cli.test_quote import ROOT, clean_env
from tests.store.conftest import Clock
from tests.store.test_backup import assert_consistent_copy

MISSING = "(set BOT_DB_PATH or run from the bot's folder)"
NEWER = "was written by a newer version of the bot"


def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    # PYTHONPATH: `python -m bot` from any folder, installed or not.
    env = {**env, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_all(
    commands: list[list[str]], env: dict[str, str], cwd: Path = ROOT
) -> list[subprocess.CompletedProcess[str]]:
    """Several commands side by side (each is a fresh interpreter)."""
    procs = [(c, start(c, env, cwd)) for c in commands]
    done = []
    for command, proc in procs:
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return done


def refused_with(done: subprocess.CompletedProcess[str], text: str) -> None:
    assert done.returncode != 0, (done.args, done.stdout)
    assert text in done.stderr, (done.args, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr  # one clear line


READ_ONLY = [
    ["ledger", "balance", "1", "2"],
    ["ledger", "history", "1", "2", "--json"],
    ["ledger", "export", "1"],
    ["jobs"],
    ["jobs", "--active", "--json"],
    ["health"],
    ["prune", "--dry-run"],
    ["prune"],
    ["backup", "copy.sqlite3"],
]


def test_read_only_commands_from_the_wrong_folder_create_no_database(tmp_path: Path) -> None:
    wrong = tmp_path / "somewhere-else"
    wrong.mkdir()
    expected = f"no database at {wrong / 'data' / 'bot.sqlite3'} {MISSING}"
    for done in run_all(READ_ONLY, clean_env(), cwd=wrong):
        refused_with(done, expected)
    assert list(wrong.iterdir()) == []  # no data/ folder, no empty database, no copy

    # A command that writes may create it, and from then on the others work.
    (grant,) = run_all(
        [["ledger", "grant", "1", "2", "50", "--reason", "start"]], clean_env(), wrong
    )
    assert grant.returncode == 0, grant.stderr
    balance, jobs = run_all(
        [["ledger", "balance", "1", "2", "--json"], ["jobs"]], clean_env(), wrong
    )
    assert json.loads(balance.stdout)["available"] == 50
    assert jobs.returncode == 0, jobs.stderr


def test_a_grant_that_creates_the_database_says_so(tmp_path: Path) -> None:
    """Run from the wrong folder (not `docker compose exec`), a grant made a new, empty database
    there and said "granted 500 Buzz; balance now 500": the admin believed the member had
    been given Buzz the running bot never saw."""
    wrong = tmp_path / "somewhere-else"
    wrong.mkdir()
    made = wrong / "data" / "bot.sqlite3"
    (grant,) = run_all([["ledger", "grant", "1", "2", "500", "--reason", "x"]], clean_env(), wrong)
    assert grant.returncode == 0, grant.stderr
    assert f"created a new database at {made}" in grant.stderr, grant.stderr
    assert "BOT_DB_PATH" in grant.stderr
    (again,) = run_all([["ledger", "grant", "1", "2", "5", "--reason", "x"]], clean_env(), wrong)
    assert again.returncode == 0 and again.stderr == "", again.stderr


def test_an_audit_cut_short_by_its_limit_says_so(tmp_path: Path) -> None:
    """The audit log is printed oldest first, at most --limit (10,000) events: on a bot that had
    made more, an operator reconciling this month's bill got last year's events and nothing
    said the recent ones (the ones wanted) were left out."""
    env = clean_env(BOT_DB_PATH=str(tmp_path / "bot.sqlite3"))
    for amount in ("5", "6", "7"):  # one at a time: their order is the log's
        (grant,) = run_all([["ledger", "grant", "1", "2", amount, "--reason", "r"]], env)
        assert grant.returncode == 0, grant.stderr
    cut, whole = run_all(
        [
            ["audit", "--action", "ledger.grant", "--limit", "2"],
            ["audit", "--action", "ledger.grant", "--limit", "3"],
        ],
        env,
    )
    assert [json.loads(line)["details"]["amount"] for line in cut.stdout.splitlines()] == [5, 6]
    assert cut.returncode == 0 and "--limit" in cut.stderr and "newer" in cut.stderr, cut.stderr
    assert whole.returncode == 0 and whole.stderr == "", whole.stderr
    assert len(whole.stdout.splitlines()) == 3


def make_newer(path: Path) -> None:
    asyncio.run(_create(path))
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO schema_version VALUES (?, '999_future.sql', '2030-01-01')",
            (newest_schema() + 5,),
        )
    conn.close()


async def _create(path: Path) -> None:
    async with Database(path):
        pass


def test_every_command_refuses_a_database_from_a_newer_bot(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    make_newer(path)
    before = path.read_bytes()
    env = clean_env(BOT_DB_PATH=str(path), DISCORD_TOKEN="x" * 40)
    commands = [
        *READ_ONLY[:-1],
        ["ledger", "grant", "1", "2", "50", "--reason", "x"],
        ["ledger", "take", "1", "2", "50", "--reason", "x"],
        ["run"],
    ]
    expected = (
        f"the database at {path} {NEWER} (schema {newest_schema() + 5}, this code knows up to"
        f" {newest_schema()}); upgrade the bot or restore a backup"
    )
    for done in run_all(commands, env):
        refused_with(done, expected)
    check = run_all([["check-config"]], env)[0]
    assert check.returncode != 0 and expected in check.stderr
    assert path.read_bytes() == before  # not migrated, not written


WRITER = """
import asyncio, sys
from bot.store.db import Database
from bot.store.ledger import Ledger

async def main():
    async with Database(sys.argv[1]) as db:
        ledger = Ledger(db)
        n = 0
        while True:
            await db.write(ledger.grant_in, 1, n % 7 + 1, n % 50 + 1, actor_id=None, reason=f"w{n}")
            n += 1

asyncio.run(main())
"""


def entries(path: Path) -> int:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()[0])
    finally:
        conn.close()


def wait_for_entries(path: Path, at_least: int, writer: subprocess.Popen[bytes]) -> None:
    """Poll until the writer has committed enough; the limit only guards against a hang."""
    for _ in range(3000):
        assert writer.poll() is None, "the writer process died"
        if entries(path) >= at_least:
            return
        time.sleep(0.01)
    raise AssertionError(f"the writer never reached {at_least} entries")


def test_backup_while_another_process_keeps_writing(tmp_path: Path) -> None:
    path = tmp_path / "live" / "bot.sqlite3"
    asyncio.run(_create(path))
    env = clean_env(BOT_DB_PATH=str(path))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}
    )
    try:
        wait_for_entries(path, 200, writer)
        (done,) = run_all([["backup", str(tmp_path / "copy.sqlite3")]], env)
        assert done.returncode == 0, done.stderr
        copied = assert_consistent_copy(tmp_path / "copy.sqlite3")
        wait_for_entries(path, copied + 200, writer)  # it never stopped for the backup
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert copied >= 200
    out = tmp_path / "copy.sqlite3"
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    assert lines["backup"].strip() == str(out)
    assert lines["size"].strip().startswith(f"{out.stat().st_size:,} bytes")
    assert lines["schema"].strip() == str(newest_schema())

    again, forced = run_all([["backup", str(out)], ["backup", str(out), "--force"]], env)
    refused_with(again, f"{out} already exists: use --force to overwrite it")
    assert forced.returncode == 0, forced.stderr
    assert assert_consistent_copy(out) >= copied


PNG = b"\x89PNG\r\n\x1a\n" + bytes(5000)


async def seed_for_prune(path: Path) -> None:
    """Three edits with stored sources: ended 40 days ago, ended yesterday, still running."""
    clock = Clock(utcnow() - timedelta(days=40))
    async with Database(path) as db:
        jobs = JobStore(db, clock)

        def edit(tx: Conn, job_id: str, *path: JobStatus) -> None:
            jobs.insert_in(
                tx,
                NewJob(
                    id=job_id,
                    guild_id=1,
                    channel_id=2,
                    member_id=3,
                    model="gpt-image-1",
                    operation="editImage",
                    options={"prompt": "bluer"},
                    step={"$type": "imageGen", "input": {"images": ["source://0", "source://1"]}},
                    estimate=300,
                    status=JobStatus.QUEUED,
                ),
                [SourceImage("image", "image/png", 8, 8, PNG)] * 2,
            )
            for status in path:
                jobs.transition_in(tx, job_id, status)

        await db.write(edit, "old", JobStatus.FAILED)
        await db.write(edit, "old-running", JobStatus.SUBMITTED, JobStatus.RUNNING)
        clock.set(utcnow() - timedelta(days=1))
        await db.write(edit, "recent", JobStatus.CANCELED)


def sources_by_job(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT job_id, COUNT(*) FROM job_sources GROUP BY job_id").fetchall()
    conn.close()
    return dict(found)


def test_prune_shows_then_deletes_the_old_sources(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    asyncio.run(seed_for_prune(path))
    env = clean_env(BOT_DB_PATH=str(path))
    everything = {"old": 2, "old-running": 2, "recent": 2}

    (dry,) = run_all([["prune", "--dry-run"]], env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith(
        f"would delete 2 stored image(s) of 1 job(s), {2 * len(PNG):,} bytes (9.8 KiB)"
    )
    assert "(retention 30 days)" in dry.stdout
    assert sources_by_job(path) == everything

    (real,) = run_all([["prune"]], env)
    assert real.returncode == 0, real.stderr
    assert real.stdout.startswith(f"deleted 2 stored image(s) of 1 job(s), {2 * len(PNG):,} bytes")
    assert sources_by_job(path) == {"old-running": 2, "recent": 2}
    with sqlite3.connect(path) as conn:
        audit = conn.execute(
            "SELECT details FROM audit_events WHERE action = 'retention.prune'"
        ).fetchall()
        job_count = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
    conn.close()
    assert [json.loads(a[0])["trigger"] for a in audit] == ["cli"]
    assert job_count == 3  # the jobs themselves stay

    # A retention of 0 days is refused; a shorter one reaches yesterday's job too.
    zero = {**env, "BOT_RETENTION__DAYS": "0"}
    for done in run_all([["prune"], ["prune", "--dry-run"]], zero):
        assert done.returncode == 1
        assert "retention.days (env BOT_RETENTION__DAYS)" in done.stderr
    (one_day,) = run_all([["prune"]], {**env, "BOT_RETENTION__DAYS": "1"})
    assert one_day.stdout.startswith("deleted 2 stored image(s) of 1 job(s)")
    assert sources_by_job(path) == {"old-running": 2}


def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite3"
    content = b"this is a text file, not SQLite " * 50
    path.write_bytes(content)
    env = clean_env(BOT_DB_PATH=str(path))
    for done in run_all([["ledger", "balance", "1", "2"], ["jobs"], ["backup", "x.sqlite3"]], env):
        refused_with(done, f"cannot use the database at {path}: file is not a database")
    assert path.read_bytes() == content


def test_another_applications_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """BOT_DB_PATH names some other program's SQLite file (a typo, the wrong volume): no
    command adds the bot's tables to it, and none says to "upgrade" it by starting the bot."""
    path = tmp_path / "grafana.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, login TEXT)")
        conn.execute("INSERT INTO users (login) VALUES ('admin')")
    conn.close()
    before = path.read_bytes()
    env = clean_env(BOT_DB_PATH=str(path), DISCORD_TOKEN="x" * 40)
    commands = [
        ["run"],
        ["ledger", "grant", "1", "2", "50", "--reason", "x"],
        ["ledger", "balance", "1", "2"],
        ["jobs"],
    ]
    for done in run_all(commands, env):
        refused_with(done, f"cannot use the database at {path}: it is not the bot's database")
        assert "start the new bot" not in done.stderr
    assert path.read_bytes() == before
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    conn.close()
    assert tables == ["users"]


def test_a_damaged_database_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bot.sqlite3"
    env = clean_env(BOT_DB_PATH=str(path))
    grant = ["ledger", "grant", "1", "2", "5", "--reason", "setup"]
    assert run_all([grant], env)[0].returncode == 0
    with sqlite3.connect(path) as conn:
        pages = dict(conn.execute("SELECT name, rootpage FROM sqlite_master").fetchall())
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    for table in ("jobs", "ledger_entries"):  # a bad sector in each table's first page
        start = (pages[table] - 1) * size
        data[start : start + 100] = b"\xff" * 100
    path.write_bytes(data)
    for done in run_all([["jobs"], ["ledger", "history", "1", "2"]], env):
        refused_with(done, f"the database at {path} is damaged (database disk image is malformed)")


NO_ROOM = (
    "import resource, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))\n"
    "from bot.cli import main; raise SystemExit(main(sys.argv[1:]))"
)


def test_a_backup_with_no_room_for_it_names_the_backup_not_the_database(tmp_path: Path) -> None:
    """A file size limit stands in for a full disk where OUT goes (the live database, bigger
    than the limit, is only read)."""
    path = tmp_path / "bot.sqlite3"
    env = clean_env(BOT_DB_PATH=str(path), PYTHONPATH=str(ROOT))
    grant = [sys.executable, "-m", "bot", "ledger", "grant", "1", "2", "5", "--reason", "setup"]
    assert subprocess.run(grant, cwd=ROOT, env=env, capture_output=True).returncode == 0
    assert path.stat().st_size > 20_000
    out = tmp_path / "copy.sqlite3"
    done = subprocess.run(
        [sys.executable, "-c", NO_ROOM, "backup", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    refused_with(done, f"cannot write the backup {out}")
    assert str(path) not in done.stderr  # the live database is fine: do not blame it
    assert not out.exists() and not list(tmp_path.glob(".copy.sqlite3.partial-*"))


def test_a_limit_below_one_is_refused_naming_the_option(tmp_path: Path) -> None:
    """SQLite reads `LIMIT -1` as "every row": `--limit -1` must not quietly list them all."""
    env = {**clean_env(), "BOT_DB_PATH": str(tmp_path / "bot.sqlite3")}
    asyncio.run(_create(tmp_path / "bot.sqlite3"))
    commands = [
        ["jobs", "--limit", "-1"],
        ["ledger", "history", "1", "2", "--limit", "0"],
        ["audit", "--limit", "-5"],
        ["jobs", "--limit", "ten"],
    ]
    for done in run_all(commands, env):
        assert done.returncode == 2, (done.args, done.stdout, done.stderr)
        assert "--limit" in done.stderr, done.stderr
        assert "must be 1 or more" in done.stderr or "is not a whole number" in done.stderr
        assert "Traceback" not in done.stderr, done.stderr


def test_an_id_or_limit_beyond_any_discord_id_is_refused_naming_the_argument(
    tmp_path: Path,
) -> None:
    """A mistyped id (a digit too many, a minus) or a huge --limit ended in an OverflowError
    traceback from SQLite, or a grant to member 0 nobody can be."""
    path = tmp_path / "bot.sqlite3"
    env = {**clean_env(), "BOT_DB_PATH": str(path)}
    asyncio.run(_create(path))
    huge = str(2**64)
    commands = [
        (["ledger", "balance", "1", huge], "member"),
        (["ledger", "history", huge, "2"], "guild"),
        (["ledger", "history", "1", "2", "--limit", huge], "--limit"),
        (["ledger", "grant", "1", "0", "5", "--reason", "x"], "member"),
        (["ledger", "take", "-1", "2", "5", "--reason", "x"], "guild"),
        (["ledger", "export", huge], "guild"),
        (["audit", "--guild", huge], "--guild"),
        (["jobs", "--limit", huge], "--limit"),
    ]
    names = [named for _, named in commands]
    for named, done in zip(names, run_all([c for c, _ in commands], env), strict=True):
        assert done.returncode == 2, (done.args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert f"argument {named}" in last, last
        assert "Discord id" in last or "at most" in last, last
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ledger_entries").fetchone() == (0,)
    conn.close()


def test_a_backup_stopped_midway_leaves_nothing_behind_and_says_so(tmp_path: Path) -> None:
    """`timeout 60 python -m bot backup OUT` (SIGTERM) or Ctrl-C while the copy runs: SIGTERM
    killed it and left a hidden `.OUT.partial-PID` (and its journal) as big as the database in
    the backup folder at every such stop; Ctrl-C printed a KeyboardInterrupt traceback."""
    path = tmp_path / "live" / "bot.sqlite3"
    asyncio.run(_create(path))
    with sqlite3.connect(path) as conn:  # large enough that the copy takes a moment
        conn.execute("CREATE TABLE filler (x BLOB)")
        conn.executemany("INSERT INTO filler VALUES (?)", ((bytes(1 << 20),) for _ in range(96)))
    conn.close()
    env = clean_env(BOT_DB_PATH=str(path))
    folder = tmp_path / "backups"
    folder.mkdir()
    out = folder / "bot.sqlite3"
    for number in (signal.SIGTERM, signal.SIGINT):
        proc = start(["backup", str(out)], env, ROOT)
        partial = folder / f".{out.name}.partial-{proc.pid}"
        for _ in range(6000):  # the copy has begun; the limit only guards against a hang
            if partial.exists() or proc.poll() is not None:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the backup ended before it could be stopped"
        proc.send_signal(number)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + number, (number, err)
        assert "Traceback" not in err, err
        assert err.strip() == "backup interrupted before it finished; run it again", err
        assert list(folder.iterdir()) == [], "no partial copy left behind"


async def _seed_ledger(path: Path, entries: int) -> None:
    async with Database(path) as db:
        ledger = Ledger(db)

        def grants(conn: Conn) -> None:
            for n in range(entries):
                ledger.grant_in(conn, 1, n % 7 + 1, 5, actor_id=None, reason=f"grant {n}")

        await db.write(grants)


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    """`python -m bot ledger export G | head` (or `audit | head`): once the reader had its
    lines the command died with a BrokenPipeError traceback."""
    path = tmp_path / "bot.sqlite3"
    asyncio.run(_seed_ledger(path, 3000))  # far more than a pipe holds
    env = clean_env(BOT_DB_PATH=str(path))
    env.pop("PYTHONUNBUFFERED", None)  # as in an operator's shell
    for command in (["ledger", "export", "1"], ["audit"]):
        proc = start(command, env, ROOT)
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline()  # `head -1`: one line, then the pipe is closed
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=60)
        assert "Traceback" not in err and "BrokenPipeError" not in err, (command, err)
        assert proc.returncode == 128 + signal.SIGPIPE, (command, proc.returncode)
