"""The seed's `ignore` rules: globs (`USDT`, `BNB*`, `*USDT`, `*DOWN*`) matched case-insensitively."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable


def ignored(code: str, patterns: Iterable[str]) -> bool:
    """True when `code` matches any pattern: exact, prefix (`X*`), suffix (`*X`) or infix (`*X*`)."""
    up = code.strip().upper()
    return any(fnmatch.fnmatchcase(up, p.strip().upper()) for p in patterns if p.strip())
