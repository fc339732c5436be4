"""error_key: msgspec's validation errors as the dotted key and a message a user can act on."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from assetsync.validation import error_key


class Inner(msgspec.Struct, forbid_unknown_fields=True):
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 5000
    hosts: list[str] = []


class Outer(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    inner: Inner = msgspec.field(default_factory=Inner)


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        ({"name": "a", "inner": {"port": "x"}}, "inner.port", "expected int, got str"),
        ({"name": "a", "inner": {"port": 0}}, "inner.port", "expected int >= 1"),
        ({"name": "a", "inner": {"hosts": ["h", 1]}}, "inner.hosts[1]", "expected str, got int"),
        ({"name": "a", "inner": {"bogus": 1}}, "inner.bogus", "unknown key"),
        ({"name": "a", "bogus": 1}, "bogus", "unknown key"),
        ({"inner": {}}, "name", "required key is missing"),
        ([], "", "expected object, got array"),
    ],
)
def test_the_key_and_message_of_each_kind_of_error(raw: Any, key: str, message: str) -> None:
    with pytest.raises(msgspec.ValidationError) as err:
        msgspec.convert(raw, Outer)
    assert error_key(err.value) == (key, message)
