"""The Discord front end: the only package in bot/ that imports discord (besides the cogs).

The Bot subclass and its one error path, the request flow every command shares, the publisher
(status and result messages), the moderators' review board, the persistent buttons (one
DynamicItem class each, owning its custom_id, label and style) and the modals.
"""
