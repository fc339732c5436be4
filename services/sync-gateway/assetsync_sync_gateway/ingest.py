"""Bus events -> built-in feeds, and received records -> bus events (the two directions of a relay)."""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec
from assetsync import events as ev

from assetsync_sync_gateway.envelope import Record
from assetsync_sync_gateway.feeds import FeedStore, NewRecord
from assetsync_sync_gateway.registry import BUILTIN_BY_TAG

_enc = msgspec.json.Encoder()
_EVENT_DECODER: msgspec.json.Decoder[ev.AnyEvent] = msgspec.json.Decoder(ev.AnyEvent)

# Built-in record types a receiver republishes as themselves (ExternalRecord is for everything else).
_EXPORTED = (ev.PriceTick, ev.KlineBatch, ev.Holding, ev.Trade, ev.Order, ev.Snapshot, ev.TaskResult)


def event_tag(event: ev.Event) -> str:
    return str(type(event).__struct_config__.tag)


def to_feed_record(event: ev.Event, site_id: str) -> tuple[str, NewRecord] | None:
    """The feed code and record of a bus event, or None when no feed exports it."""
    origin = event.origin or site_id
    if isinstance(event, ev.ExternalRecord):
        return event.code, NewRecord(
            origin=origin,
            oseq=event.seq if origin != site_id else 0,
            dkey=event.key(),
            data=_enc.encode(event.data),
        )
    if isinstance(event, ev.FeedRecord):
        # A native endpoint's record is the producer's data as is; the key dedupes a republished record.
        return event.code, NewRecord(
            origin=origin,
            oseq=event.origin_seq if origin != site_id else 0,
            dkey=event.key(),
            data=_enc.encode(event.data),
        )
    code = BUILTIN_BY_TAG.get(event_tag(event))
    if code is None:
        return None
    # The record's data is the event itself without relay bookkeeping, identical at every site.
    bare = msgspec.structs.replace(event, origin="", origin_seq=0)
    return code, NewRecord(
        origin=origin,
        oseq=event.origin_seq if origin != site_id else 0,
        dkey=event.key(),
        data=_enc.encode(bare),
    )


async def ingest_events(feeds: FeedStore, events: Iterable[ev.Event]) -> dict[str, int]:
    """Append events to their feeds in one transaction; events of unknown feeds are ignored."""
    batches: dict[str, list[NewRecord]] = {}
    for e in events:
        got = to_feed_record(e, feeds.site_id)
        if got is None or not feeds.has(got[0]):
            continue
        batches.setdefault(got[0], []).append(got[1])
    return await feeds.append(batches)


def to_event(code: str, rec: Record, data: bytes, now_ms: int | None = None) -> ev.Event:
    """The bus event for a received record: the original event type where it is one, else ExternalRecord."""
    if code in BUILTIN_BY_TAG.values():
        try:
            decoded = _EVENT_DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            decoded = None
        if isinstance(decoded, _EXPORTED) and BUILTIN_BY_TAG.get(event_tag(decoded)) == code:
            return msgspec.structs.replace(decoded, origin=rec.origin, origin_seq=rec.origin_seq)
    return ev.ExternalRecord(
        origin=rec.origin,
        code=code,
        seq=rec.origin_seq,
        data=msgspec.json.decode(data),
        received_at=now_ms if now_ms is not None else int(time.time() * 1000),
    )
