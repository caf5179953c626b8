"""How the engine follows a workflow: long-poll with `wait=`, or a polling schedule.

Long-polling costs one request per `wait` seconds and detects completion as soon as the server
answers; a schedule trades detection latency for requests. bench/engine.py measures both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LongPoll:
    """Submit and get with wait=W: the orchestrator answers when the workflow ends."""

    wait: int = 60

    @property
    def submit_wait(self) -> int:
        return self.wait

    def next_request(self, attempt: int) -> tuple[float, int]:
        """(seconds to sleep before the request, wait= for the request)."""
        return 0.0, self.wait


@dataclass(frozen=True)
class Schedule:
    """Poll with wait=0 after each delay in turn, repeating the last (the Civitai docs' cadence
    is 5, 10, 20, 30, 30, 60 s)."""

    delays: tuple[float, ...] = (5, 10, 20, 30, 30, 60)
    scale: float = 1.0

    @property
    def submit_wait(self) -> int:
        return 0

    def next_request(self, attempt: int) -> tuple[float, int]:
        delay = self.delays[min(attempt, len(self.delays) - 1)]
        return delay * self.scale, 0


FollowPolicy = LongPoll | Schedule


def follow_policy(wait: int) -> FollowPolicy:
    """The configured long-poll length; 0 (no long-poll) polls on the documented cadence, as
    a long-poll of 0 s answers at once and would be asked again straight away."""
    return LongPoll(wait) if wait > 0 else Schedule()
