"""Which of the lane's models are switched off because the endpoint said it does not serve them.

An upstream "model not found / deprecated" answer switches that model off for every guild: the
bot stops offering it (admission refuses it by name) and remembers it across restarts, in the
database's bot_state. Only the operator switches it back on (`python -m bot openai-models
--enable MODEL`), once the endpoint serves it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping

from bot.openai_api.catalog import model_spec
from bot.store.state import BotState

log = logging.getLogger(__name__)

KEY = "openai.disabled_models"


class ModelSwitch:
    def __init__(self, state: BotState, disabled: Mapping[str, str] | None = None) -> None:
        self.state = state
        self._disabled = dict(disabled or {})

    @classmethod
    async def load(cls, state: BotState) -> ModelSwitch:
        return cls(state, _parse(await state.get(KEY)))

    @property
    def disabled(self) -> dict[str, str]:
        """Model -> why it was switched off (the endpoint's words)."""
        return dict(self._disabled)

    def why_off(self, model: str) -> str | None:
        spec = model_spec(model)
        return self._disabled.get(spec.name if spec else model)

    async def disable(self, model: str, reason: str) -> bool:
        """Switch `model` off (persisted); False when it already was."""
        spec = model_spec(model)
        name = spec.name if spec else model
        if name in self._disabled:
            return False
        # Merged into what is stored, not written from this process's copy: an operator's
        # `openai-models --enable` since this bot started must not be undone.
        await self._change(lambda stored: {**stored, name: stored.get(name, reason[:300])})
        log.error("switched %s off: the endpoint does not serve it (%s)", name, reason)
        return True

    async def enable(self, model: str) -> bool:
        """Switch `model` back on; False when it was not off."""
        spec = model_spec(model)
        name = spec.name if spec else model
        was_off = name in self._disabled

        def switch_on(stored: dict[str, str]) -> dict[str, str]:
            nonlocal was_off
            was_off = was_off or name in stored
            return {k: v for k, v in stored.items() if k != name}

        await self._change(switch_on)
        return was_off

    async def _change(self, change: Callable[[dict[str, str]], dict[str, str]]) -> None:
        stored = await self.state.update(
            KEY, lambda raw: json.dumps(change(_parse(raw)), sort_keys=True)
        )
        self._disabled = _parse(stored)


def _parse(raw: str | None) -> dict[str, str]:
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except ValueError:
        log.warning("bot_state %s is not JSON; no model is switched off", KEY)
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
