"""The OpenAI lane's parts, built once from the settings: the client (to OPENAI_BASE_URL with
OPENAI_API_KEY, or to the built-in simulator when there is no key), the price table, the lane
settings, the `user` hash's salt and the model switch."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import SecretStr

from bot import net
from bot.config import Settings
from bot.metrics import Metrics
from bot.openai_api.catalog import availability
from bot.openai_api.client import OpenAIImagesClient
from bot.openai_api.pricing import PriceTable
from bot.openai_api.request import LaneSettings
from bot.openai_api.switch import ModelSwitch
from bot.store.state import BotState

if TYPE_CHECKING:  # the simulator (an aiohttp server) loads only when there is no key
    from bot.openai_api.simulator import OpenAISimulator

log = logging.getLogger(__name__)

SALT_KEY = "openai.user_salt"


@dataclass
class OpenAIService:
    client: OpenAIImagesClient
    simulator: OpenAISimulator | None
    prices: PriceTable
    lane_settings: LaneSettings
    salt: SecretStr = field(repr=False)
    switch: ModelSwitch
    moderation_low_allowed: bool = False

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def offered(self) -> tuple[str, ...]:
        """The models members can use now: served, priced and not switched off."""
        found = availability(self.lane_settings.served, self.prices.priced_models())
        return tuple(m for m in found.enabled if self.switch.why_off(m) is None)

    async def aclose(self) -> None:
        await self.client.aclose()
        if self.simulator is not None:
            await self.simulator.stop()


async def user_salt(settings: Settings, state: BotState) -> SecretStr:
    """The configured salt, else the one kept in the database (made at the first start), so
    the same member keeps the same `user` value across restarts."""
    configured = settings.openai.user_salt
    if configured is not None and configured.get_secret_value():
        return configured
    kept = await state.get(SALT_KEY)
    if not kept:
        kept = secrets.token_urlsafe(32)
        await state.set(SALT_KEY, kept)
    return SecretStr(kept)


async def open_service(
    settings: Settings,
    state: BotState,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    metrics: Metrics | None = None,
) -> OpenAIService:
    """Connect to the endpoint — or start the built-in simulator when there is no
    OPENAI_API_KEY (`base_url`/`api_key` point at a running one instead)."""
    config = settings.openai
    simulator: OpenAISimulator | None = None
    key: SecretStr | str | None = api_key
    if base_url is None:
        if config.api_key is None or not config.api_key.get_secret_value():
            from bot.openai_api.simulator import OpenAISimulator

            simulator = OpenAISimulator(
                api_key=secrets.token_urlsafe(24), speed=settings.simulator.speed
            )
            base_url = await net.start_simulator(simulator, settings.simulator.port)
            key = simulator.api_key
            log.warning(
                "NO OPENAI_API_KEY: the OpenAI lane runs on the built-in simulator at %s — "
                "placeholder images, nothing spent upstream",
                base_url,
            )
        else:
            base_url, key = config.base_url, config.api_key
    client = OpenAIImagesClient(
        base_url,
        key,
        timeout=config.request_timeout_seconds,
        max_retries=config.max_retries,
        max_output_calls=config.max_output_calls,
        retry_max_delay=config.retry_max_delay_seconds,
        max_image_bytes=config.max_image_bytes,
        metrics=metrics,
    )
    service = OpenAIService(
        client=client,
        simulator=simulator,
        prices=PriceTable(config.prices),
        lane_settings=LaneSettings(
            partial_images=config.partial_images,
            served=frozenset(config.models) if config.models else None,
        ),
        salt=await user_salt(settings, state),
        switch=await ModelSwitch.load(state),
        moderation_low_allowed=config.moderation_low_allowed,
    )
    found = availability(service.lane_settings.served, service.prices.priced_models())
    log.info(
        "lane: openai at %s; models offered: %s",
        net.without_credentials(service.base_url),
        ", ".join(service.offered()) or "none",
    )
    if found.unpriced:
        log.warning(
            "OpenAI models without a Buzz price, not offered: %s (set openai.prices)",
            ", ".join(found.unpriced),
        )
    for model, why in service.switch.disabled.items():
        log.warning("OpenAI model %s is switched off: %s", model, why)
    return service
