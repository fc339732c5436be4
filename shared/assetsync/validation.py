"""msgspec validation errors as (dotted key, message), so every error a user sees names its key."""

from __future__ import annotations

import re

import msgspec

_AT = re.compile(r" - at `\$\.?(.*)`$")
_FIELD_ERRORS = (
    (re.compile(r"Object contains unknown field `(.+)`"), "unknown key"),
    (re.compile(r"Object missing required field `(.+)`"), "required key is missing"),
)


def error_key(err: msgspec.ValidationError) -> tuple[str, str]:
    """`Expected `int`, got `str` - at `$.a.b[0]`` → ("a.b[0]", "expected int, got str").

    An unknown or missing field is named in the key itself ("a.b.bogus", "unknown key"); an error at
    the top level has the key "".
    """
    text = str(err)
    key = ""
    at = _AT.search(text)
    if at:
        key = at.group(1)
        text = text[: at.start()]
    for pattern, message in _FIELD_ERRORS:
        field = pattern.match(text)
        if field:
            return (f"{key}.{field.group(1)}" if key else field.group(1)), message
    text = text.replace("`", "")
    return key, (text[0].lower() + text[1:] if text else "invalid")
