"""Every persistent button, registered with the bot once (DynamicItems answer clicks on
messages posted before a restart)."""

from typing import Any

from discord.ui import DynamicItem

from bot.discord_adapter.buttons.confirm import ConfirmButton, DeclineButton
from bot.discord_adapter.buttons.enhance import ENHANCE_BUTTONS
from bot.discord_adapter.buttons.job import AppealButton, CancelButton
from bot.discord_adapter.buttons.offers import OfferButton
from bot.discord_adapter.buttons.result import RESULT_BUTTONS
from bot.discord_adapter.buttons.review import REVIEW_BUTTONS
from bot.discord_adapter.buttons.tools import TOOL_BUTTONS

PERSISTENT: tuple[type[DynamicItem[Any]], ...] = (
    CancelButton,
    AppealButton,
    ConfirmButton,
    DeclineButton,
    *RESULT_BUTTONS,
    *REVIEW_BUTTONS.values(),
    *TOOL_BUTTONS,
    *ENHANCE_BUTTONS,
    OfferButton,
)
