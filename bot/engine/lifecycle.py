"""Models the orchestrator no longer runs: what the member reads when their job meets one,
and the one alert the operator gets (the switch-off itself commits with the job's ending)."""

from __future__ import annotations

import logging

from bot.catalog.replacement import retired_text
from bot.catalog.tools import Tool
from bot.engine.lane import Ending
from bot.engine.parts import Parts
from bot.store.jobs import JobRecord

log = logging.getLogger(__name__)


async def unavailable_message(parts: Parts, job: JobRecord, model: str, charged: int) -> str:
    settings = await parts.guilds.settings(job.guild_id)
    enabled = settings.model_enabled

    def on(name: str) -> bool:  # the model itself is about to be switched off
        return name != model and enabled(name)

    paid = f"{charged:,} Buzz charged" if charged else "nothing was charged"
    return f"{retired_text(model, job.operation, on)}. {paid[:1].upper()}{paid[1:]}"


async def retirement_alert(parts: Parts, job: JobRecord, ending: Ending) -> None:
    """Once per model: it was switched off for every guild until an admin turns it on."""
    model = ending.unavailable_model
    log.warning("model %s switched off: the orchestrator says it is unavailable", model)
    air = (job.step.get("input") or {}).get("model") if model == Tool.UPSCALE.value else None
    if air:
        # The operator's own upscaler (civitai.upscaler_model): turned on again as it is, it
        # meets the same model and is switched off again, so the setting is changed first.
        await parts.alert(
            f"model-retired:{model}:{air}",
            f"The orchestrator says the upscaler model {air} (civitai.upscaler_model) is "
            f"unavailable or retired ({ending.detail or 'no detail'}); Upscale is switched off "
            "for every server. Set BOT_CIVITAI__UPSCALER_MODEL to another upscaler's AIR (or "
            "unset it for the orchestrator's default) and restart, then an admin turns it on "
            f"again with /settings model {model} enabled:True (job {job.id}).",
        )
        return
    await parts.alert(
        f"model-retired:{model}",
        f"The orchestrator says {model} is unavailable or retired ({ending.detail or 'no detail'});"
        f" it is switched off for every server until an admin turns it on again with "
        f"/settings model {model} enabled:True (job {job.id}).",
    )
