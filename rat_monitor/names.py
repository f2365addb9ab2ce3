"""Names that become file or folder names (a rater's scores folder, a live source's run folder): letters, digits,
'.', '_' or '-', starting with a letter or a digit, so that no name is '.', '..' or hidden, and none leaves its
folder."""

from __future__ import annotations

import re

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RULE = "letters, digits, '.', '_' or '-', starting with a letter or digit"


def is_safe_name(name: object, max_length: int) -> bool:
    return isinstance(name, str) and len(name) <= max_length and _SAFE.fullmatch(name) is not None
