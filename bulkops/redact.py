"""Redacting the API key from text that came from elsewhere (server answers, exception text).

The key is replaced only as a whole token: where the characters on both sides of a match
could not be part of a key (letters, digits, ``_`` and ``-``, the characters Telnyx keys are
made of). A short key, such as a sandbox's ``k``, then leaves ``kind=assign`` as it is, while
``Bearer k`` or ``"k"`` still lose it.
"""

from __future__ import annotations

import re
from functools import lru_cache

_KEY_CHARS = r"A-Za-z0-9_\-"


@lru_cache(maxsize=8)
def _pattern(secret: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![{_KEY_CHARS}]){re.escape(secret)}(?![{_KEY_CHARS}])")


def redact(text: str, secret: str, mask: str = "***") -> str:
    """``text`` with every whole-token occurrence of ``secret`` replaced by ``mask``."""
    if not secret or secret not in text:  # the common case: no regex at all
        return text
    return _pattern(secret).sub(mask, text)
