"""Helpers the benchmarks share: percentiles, another process's memory and CPU, the
instrumented simulator (bench/simproc.py) in a process of its own."""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(len(ordered), rank) - 1]


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


# -- another process's memory and CPU (Linux /proc) ---------------------------------------------
def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int) -> float:
    """The process's resident high-water mark (VmHWM) since it started or since reset_peak."""
    return _status_kb(pid, "VmHWM") / 1024


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0, own processes). False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# -- the instrumented simulator ----------------------------------------------------------------
@dataclass
class SimProcess:
    process: subprocess.Popen[str]
    base_url: str
    token: str
    stats_url: str

    def stats(self, since: int = 0) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.stats_url}?since={since}", timeout=30) as answer:
            return json.loads(answer.read())


@contextlib.contextmanager
def simulator(*options: str) -> Iterator[SimProcess]:
    """bench/simproc.py in its own process (its rendering and JSON work stay out of the bot's
    CPU and memory figures); stopped on exit."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "simproc.py"), *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise SystemExit("the simulator did not start (see its error above)")
        info = json.loads(line)
        yield SimProcess(process, info["base_url"], info["token"], info["stats_url"])
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def row(label: str, value: str, target: str = "", verdict: str = "") -> str:
    return f"  {label:52} {value:>16}   {target:<14} {verdict}"


def verdict(value: float, target: str) -> str:
    """'meets' / 'MISSES' for a target written as "< 1 s", "<= 1.05", "< 150 MB"."""
    if math.isnan(value):
        return "n/a"
    op, number = target.split()[:2]
    limit = float(number)
    ok = value <= limit if op in ("<=", "≤") else value < limit
    return "meets" if ok else "MISSES"
