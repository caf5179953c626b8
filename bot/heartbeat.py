"""The running bot's heartbeat: a small JSON file next to the database that `python -m bot
health` (and a container's HEALTHCHECK) reads without the bot's secrets or Discord."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from bot.store.db import iso, utcnow

EVERY = 30.0
STALE_AFTER = timedelta(seconds=120)


def heartbeat_path(db_path: Path) -> Path:
    # Named after the database, like its lock: two bots on two databases in one folder each
    # have their own (one shared file made either look like the other).
    return db_path.with_name(db_path.name + ".heartbeat.json")


@dataclass(frozen=True)
class Beat:
    at: datetime
    ready: bool
    guilds: int = 0
    jobs_running: int = 0
    # Written once by an orderly stop: unhealthy at once, not two minutes later.
    stopped: bool = False
    # What only the operator can fix while the bot runs on (its database file replaced).
    problem: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "at": iso(self.at),
                "ready": self.ready,
                "guilds": self.guilds,
                "jobs_running": self.jobs_running,
                "stopped": self.stopped,
                "problem": self.problem,
            }
        )


def write(path: Path, beat: Beat) -> None:
    # Write then rename: a reader never sees half a file.
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(beat.to_json())
    partial.replace(path)


def problems(path: Path, now: datetime | None = None) -> tuple[list[str], Beat | None]:
    """What makes the bot unhealthy according to its heartbeat (empty: healthy)."""
    try:
        data = json.loads(path.read_text())
        beat = Beat(
            at=datetime.fromisoformat(data["at"]),
            ready=bool(data.get("ready")),
            guilds=int(data.get("guilds", 0)),
            jobs_running=int(data.get("jobs_running", 0)),
            stopped=bool(data.get("stopped", False)),
            problem=str(data["problem"]) if data.get("problem") else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return [f"no heartbeat at {path}: is the bot running?"], None
    age = (now or utcnow()) - beat.at
    if beat.stopped:
        return [f"the bot stopped at {beat.at:%Y-%m-%d %H:%M:%S} UTC"], beat
    if age > STALE_AFTER:  # before its problem: a bot killed while waiting is not waiting
        stale = f"the last heartbeat is {int(age.total_seconds())} s old"
        return [stale, *([f"it last said: {beat.problem}"] if beat.problem else [])], beat
    if beat.problem:
        return [beat.problem], beat
    if not beat.ready:
        return ["the bot is running but not connected to Discord"], beat
    return [], beat
