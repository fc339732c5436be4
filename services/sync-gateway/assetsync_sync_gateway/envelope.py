"""The wire format of a feed page: opaque cursors (epoch + sequence) and the record envelope."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

import msgspec

_CURSOR_RE = re.compile(r"^v1\.([0-9a-f]{8,32})\.(\d{1,19})$")
MAX_SEQ = 2**63 - 1


class CursorError(ValueError):
    """A `since` value that is not a cursor this gateway issued (answered with 400)."""


class StaleCursor(Exception):
    """A cursor from an older epoch of the feed (answered with 409: the receiver resyncs)."""

    def __init__(self, code: str, epoch: str, current: str) -> None:
        super().__init__(f"cursor for {code} is from epoch {epoch}, the feed is now at epoch {current}")
        self.code = code
        self.epoch = epoch
        self.current = current


def encode_cursor(epoch: str, seq: int) -> str:
    """An opaque, URL-safe resume point: after sequence `seq` of feed epoch `epoch`."""
    return base64.urlsafe_b64encode(f"v1.{epoch}.{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    """(epoch, seq) of a cursor; CursorError when it is not one of ours."""
    if not cursor or len(cursor) > 96:
        raise CursorError("since: not a cursor issued by this gateway")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise CursorError("since: not a cursor issued by this gateway") from exc
    m = _CURSOR_RE.match(raw)
    if not m or int(m.group(2)) > MAX_SEQ:
        raise CursorError("since: not a cursor issued by this gateway")
    return m.group(1), int(m.group(2))


class Record(msgspec.Struct, omit_defaults=True):
    """One record as received: `data` stays raw JSON bytes (never re-encoded on the way through)."""

    seq: int
    origin: str
    data: msgspec.Raw
    oseq: int = 0  # the origin's own sequence, present when this site relays another site's record

    @property
    def origin_seq(self) -> int:
        return self.oseq or self.seq


class Page(msgspec.Struct):
    """One page of a feed as received."""

    code: str
    records: list[Record]
    next_cursor: str
    has_more: bool


class BatchItem(msgspec.Struct, forbid_unknown_fields=True):
    """One endpoint in a `batch` request."""

    code: str
    since: str | None = None
    limit: int | None = None


class BatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The body of `POST …/sender/batch`."""

    requests: list[BatchItem]
    exclude_origin: str | None = None


page_decoder = msgspec.json.Decoder(Page)
batch_decoder = msgspec.json.Decoder(BatchRequest)
_str_enc = msgspec.json.Encoder()


def json_str(value: str) -> bytes:
    """A JSON string literal."""
    return _str_enc.encode(value)


def page_bytes(
    code: str, rows: Sequence[tuple[int, str, int, bytes]], next_cursor: str, has_more: bool, site_id: str
) -> bytes:
    """Assemble a page from stored rows (seq, origin, origin seq, raw JSON) without re-encoding data."""
    parts: list[bytes] = []
    quoted: dict[str, bytes] = {}
    for seq, origin, oseq, data in rows:
        q = quoted.get(origin)
        if q is None:
            q = quoted[origin] = json_str(origin)
        if origin == site_id or not oseq or oseq == seq:
            parts.append(b'{"seq":%d,"origin":%s,"data":%s}' % (seq, q, data))
        else:
            parts.append(b'{"seq":%d,"origin":%s,"oseq":%d,"data":%s}' % (seq, q, oseq, data))
    return b'{"code":%s,"records":[%s],"next_cursor":%s,"has_more":%s}' % (
        json_str(code),
        b",".join(parts),
        json_str(next_cursor),
        b"true" if has_more else b"false",
    )
