"""Safety rules without I/O: content levels per channel (Discord's age restriction, the
guild's and each channel's setting) and pre-moderation's labels and verdicts."""
