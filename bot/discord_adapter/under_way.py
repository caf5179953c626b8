"""Interactions under way when the bot stops: an orderly stop lets them finish (for a while)
before the connection to Discord closes. Otherwise a command whose change is made (a grant, a
moderator's refund, an admitted job) is never answered, and its author cannot tell whether it
happened: a grant run again is granted twice."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

# The names discord.py gives the tasks that run an interaction's handler (app commands,
# buttons of views and DynamicItems, modals).
HANDLER_TASKS = (
    "CommandTree-invoker",
    "discord-ui-view-dispatch-",
    "discord-ui-dynamic-item-",
    "discord-ui-modal-dispatch-",
)
# Seconds a stop waits for them: well inside `docker stop`'s 10 before it kills.
ANSWER_WAIT = 5.0


async def finish_interactions(wait: float = ANSWER_WAIT) -> None:
    current = asyncio.current_task()
    handlers = [
        task
        for task in asyncio.all_tasks()
        if task is not current and not task.done() and task.get_name().startswith(HANDLER_TASKS)
    ]
    if not handlers:
        return
    log.info("stopping: waiting up to %.0fs for %d interaction(s)", wait, len(handlers))
    _, late = await asyncio.wait(handlers, timeout=wait)
    if late:
        log.warning("stopping: %d interaction(s) not finished in time", len(late))
