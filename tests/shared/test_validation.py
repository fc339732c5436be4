"""error_key: msgspec's validation errors as the dotted key and a message a user can act on."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest
from assetsync.validation import describe, error_key


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


def test_a_rule_written_on_the_type_is_also_the_message() -> None:
    from assetsync.config import Config
    from assetsync_sync_gateway.live_settings import ReceiverPatch

    with pytest.raises(msgspec.ValidationError) as bad_url:
        msgspec.convert({"remote_url": "ftp://host"}, ReceiverPatch)
    assert error_key(bad_url.value, ReceiverPatch) == (
        "remote_url",
        "expected the remote gateway, e.g. http://host:5000 (empty: none)",
    )
    with pytest.raises(msgspec.ValidationError) as bad_rate:
        msgspec.convert({"sync_gateway": {"sender": {"rate_limit": -5}}}, Config)
    key, message = error_key(bad_rate.value, Config)
    assert key == "sync_gateway.sender.rate_limit"
    assert message.startswith("expected int >= 0") and "0 = unlimited" in message
    assert describe(Config, "sync_gateway.receiver.sync_interval").startswith("seconds between")
    assert describe(Config, "sync_gateway.port") == ""
    assert describe(Config, "no.such.key") == ""
