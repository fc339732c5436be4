"""msgspec validation errors as (dotted key, message), so every error a user sees names its key."""

from __future__ import annotations

import re
from typing import Any

import msgspec

_AT = re.compile(r" - at `\$\.?(.*)`$")
_FIELD_ERRORS = (
    (re.compile(r"Object contains unknown field `(.+)`"), "unknown key"),
    (re.compile(r"Object missing required field `(.+)`"), "required key is missing"),
)


def error_key(err: msgspec.ValidationError, root: Any = None) -> tuple[str, str]:
    """`Expected `int`, got `str` - at `$.a.b[0]`` → ("a.b[0]", "expected int, got str").

    An unknown or missing field is named in the key itself ("a.b.bogus", "unknown key"); an error at
    the top level has the key "". With `root` (the type decoded), a field whose type carries a
    `Meta(description=…)` adds it, so the rule written on the type is also the message.
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
    message = text[0].lower() + text[1:] if text else "invalid"
    help_text = describe(root, key) if root is not None and key else ""
    if help_text:
        # A regex says little to a user; the description says what is expected.
        message = f"expected {help_text}" if "matching regex" in message else f"{message} ({help_text})"
    return key, message


def describe(root: Any, key: str) -> str:
    """The `Meta(description=…)` on the field at dotted `key` of the type `root` ("" if none)."""
    t: Any = msgspec.inspect.type_info(root)
    for part in re.split(r"\.|(?=\[)", key):
        if not part:
            continue
        t = _plain(t)
        if isinstance(t, msgspec.inspect.StructType):
            field = next((f for f in t.fields if part in (f.encode_name, f.name)), None)
            if field is None:
                return ""
            t = field.type
        elif part.startswith("[") and isinstance(t, msgspec.inspect.ListType | msgspec.inspect.TupleType):
            t = t.item_type if isinstance(t, msgspec.inspect.ListType) else Any
        elif isinstance(t, msgspec.inspect.DictType):
            t = t.value_type
        else:
            return ""
    for option in t.types if isinstance(t, msgspec.inspect.UnionType) else (t,):
        if isinstance(option, msgspec.inspect.Metadata) and option.extra_json_schema:
            return str(option.extra_json_schema.get("description", ""))
    return ""


def _plain(t: Any) -> Any:
    """The type under `Meta` and `| None`."""
    if isinstance(t, msgspec.inspect.UnionType):
        t = next((o for o in t.types if not isinstance(o, msgspec.inspect.NoneType)), t)
    while isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    return t
