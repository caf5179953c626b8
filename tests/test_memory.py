"""Memory the bot gives back or never takes: freed image buffers, unused simulators."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from bot.memory_tuning import tune_malloc

# A 4K result's buffer, freed; then the next results' buffers (1 MB each) with a few small
# objects made between them that stay alive (as a running bot makes them), all freed again.
SCRIPT = """
import sys
from bot.memory_tuning import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
big = bytearray(24 * 2**20)
del big
start = rss()
buffers, kept = [], []
for i in range(60):
    buffers.append(bytearray(2**20))
    kept.append(bytearray(1024))  # over pymalloc's 512 bytes: from the heap
del buffers
print(rss() - start)
"""

glibc = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the tuning is glibc's mallopt"
)


def kept_after_freeing(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@glibc
def test_freed_image_buffers_are_handed_back_after_a_large_one() -> None:
    untuned, tuned = kept_after_freeing("default"), kept_after_freeing("tuned")
    # Without the fixed threshold the 60 MB stay in the heap behind the small objects.
    assert untuned > 40 * 2**20
    assert tuned < 8 * 2**20


def test_a_c_library_without_mallopt_is_left_alone(tmp_path) -> None:
    # Not a C library at all, as find_library can hand back on odd systems: nothing done.
    assert tune_malloc(str(tmp_path / "missing.so")) is False


def test_a_bot_with_real_upstreams_does_not_load_the_simulators() -> None:
    # The simulators (an aiohttp server each, the OpenAPI schema's validator) cost ~6 MB.
    script = (
        "import sys, bot.services, bot.discord_adapter.runner\n"
        "print(sorted(m for m in sys.modules if 'simulator' in m or m == 'jsonschema'))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
