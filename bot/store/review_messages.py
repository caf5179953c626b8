"""Where a review item's message is, when it goes: found by the deleted message's id, and
forgotten only if it is still the item's message (so a copy posted since is kept)."""

from __future__ import annotations

from bot.store.db import Conn, Database


class ReviewMessages:
    """Part of ModerationStore (its `db`): the item-message bookkeeping of the review board."""

    db: Database

    async def item_id_for_message(self, message_id: int) -> int | None:
        """The review item whose message this is, if any."""
        found = await self.db.fetchone(
            "SELECT id FROM review_items WHERE message_id = ?", (message_id,)
        )
        return None if found is None else int(found[0])

    def forget_item_message_in(self, tx: Conn, item_id: int, message_id: int) -> bool:
        """Clear the item's message if it is still `message_id`; True if it was."""
        cursor = tx.execute(
            "UPDATE review_items SET message_channel_id = NULL, message_id = NULL"
            " WHERE id = ? AND message_id = ?",
            (item_id, message_id),
        )
        return cursor.rowcount == 1

    async def forget_item_message(self, item_id: int, message_id: int) -> bool:
        return await self.db.write(self.forget_item_message_in, item_id, message_id)
