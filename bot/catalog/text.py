"""Whether a prompt says anything: text made only of spaces, invisible or filler characters
is no prompt (it would be charged for an image of nothing)."""

from __future__ import annotations

import unicodedata

# Characters that draw nothing yet are letters or symbols to Unicode, often used to post
# "empty" messages: braille blank, the Hangul fillers.
FILLERS = frozenset("\u2800\u3164\u115f\u1160\uffa0")
# Separators, controls, format characters (zero-width ...), unassigned, private use, and
# combining marks, which only change the character before them.
INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Me"})


def has_visible_text(text: str) -> bool:
    return any(
        ch not in FILLERS and unicodedata.category(ch) not in INVISIBLE_CATEGORIES for ch in text
    )
