"""What a moderator can decide on a review item, and which decisions fit which kind of item."""

from __future__ import annotations

from enum import StrEnum

from bot.store.moderation import ReviewItem


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REFUND = "refund"
    DISMISS = "dismiss"
    STRIKE = "strike"
    BAN = "ban"
    # A result kept from its channel: to the guild's release channel, or to the member by DM.
    RELEASE = "release"
    SEND_DM = "dm"


CLOSING = {
    Action.APPROVE: "approved",
    Action.REJECT: "rejected",
    Action.REFUND: "refunded",
    Action.DISMISS: "dismissed",
    Action.RELEASE: "released",
    Action.SEND_DM: "released",
}
RELEASING = {Action.RELEASE, Action.SEND_DM}
# Decisions that give the member Buzz back, run what the filter held or show what was kept from
# its channel: never one's own (an admin's may: admins grant Buzz and set the filters anyway).
FOR_OTHERS = {Action.APPROVE, Action.REFUND} | RELEASING
# How a refusal of one's own item names the decision.
VERBS = {Action.SEND_DM: "send it by DM"}
# Which decisions fit which kind of item.
FITS = {
    "held": {Action.APPROVE, Action.REJECT, Action.STRIKE, Action.BAN},
    "blocked": {Action.REFUND, Action.DISMISS, Action.STRIKE, Action.BAN},
    # Charged, but nothing posted (the images could not be, or the workflow failed and
    # upstream kept the charge): refund it or leave it.
    "undelivered": {Action.REFUND, Action.DISMISS},
    # Rated above its channel's level: release it elsewhere, refund it, or leave it unposted.
    "mature": {
        Action.RELEASE,
        Action.SEND_DM,
        Action.REFUND,
        Action.DISMISS,
        Action.STRIKE,
        Action.BAN,
    },
}


def unfit(item: ReviewItem, action: Action) -> str:
    if item.kind == "held":
        return "This job is held for review before it runs: Approve or Reject it."
    if item.kind == "undelivered":
        return "This job was charged but nothing was posted: Refund or Dismiss it."
    if item.kind == "mature":
        return (
            "This result was kept from its channel: Release it, send it by DM, Refund or Dismiss."
        )
    if action in RELEASING:
        return "Only results kept from their channel (rated above its level) can be released."
    return f"This job was blocked upstream; {action.value} applies only to held jobs."
