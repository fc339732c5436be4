"""A string wrapper that never shows its value in repr, str or logs."""

from __future__ import annotations

import re


class Secret:
    """Holds a credential; `.get()` returns it, everything else shows a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def masked(self) -> str:
        return "***" if self._value else ""

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    __str__ = masked

    def __format__(self, spec: str) -> str:
        return self.masked()


# `scheme://user:password@host` -> `scheme://user:***@host` (also a bare `scheme://token@host`).
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^/\s:@]*)(?::[^/\s@]*)?@")


def mask_urls(text: str) -> str:
    """Every URL in `text` with its password (or lone token) replaced by `***`."""
    if "@" not in text:
        return text
    return _URL_CREDENTIALS.sub(_mask_one, text)


def _mask_one(m: re.Match[str]) -> str:
    user = m.group("user")
    has_password = m.group(0)[len(m.group("scheme")) + len(user)] == ":"
    return f"{m.group('scheme')}{user}:***@" if has_password else f"{m.group('scheme')}***@"
