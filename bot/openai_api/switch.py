"""Which of the lane's models are switched off because the endpoint said it does not serve them.

An upstream "model not found / deprecated" answer switches that model off for every guild: the
bot stops offering it (admission refuses it by name) and remembers it across restarts, in the
database's bot_state. Only the operator switches it back on (`python -m bot openai-models
--enable MODEL`), once the endpoint serves it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

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
        raw = await state.get(KEY)
        disabled: dict[str, str] = {}
        if raw:
            try:
                found = json.loads(raw)
            except ValueError:
                log.warning("bot_state %s is not JSON; no model is switched off", KEY)
            else:
                if isinstance(found, dict):
                    disabled = {str(k): str(v) for k, v in found.items()}
        return cls(state, disabled)

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
        self._disabled[name] = reason[:300]
        await self.state.set(KEY, json.dumps(self._disabled, sort_keys=True))
        log.error("switched %s off: the endpoint does not serve it (%s)", name, reason)
        return True

    async def enable(self, model: str) -> bool:
        """Switch `model` back on; False when it was not off."""
        spec = model_spec(model)
        name = spec.name if spec else model
        if self._disabled.pop(name, None) is None:
            return False
        await self.state.set(KEY, json.dumps(self._disabled, sort_keys=True))
        return True
