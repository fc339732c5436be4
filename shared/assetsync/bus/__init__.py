"""JetStream plumbing: connect, declare streams, publish with Nats-Msg-Id, batched durable consumers.

Modules: errors (exceptions, Nats-Msg-Id) / streams (connect, declare streams) / publisher /
consumer; everything public is re-exported here (`from assetsync import bus; bus.Publisher`).

Performance notes (see PERFORMANCE.md): nats-py's pull `fetch()` costs a task and a uuid per message,
so consumers here are durable *push* consumers with a deliver group (replicas share the work), feeding
a buffer that the handler commits in batches; acks go out only after the handler returns. Publishes
use `publish_async` with a bounded number in flight and check every ack.
"""

from assetsync.bus.consumer import (
    BatchHandler,
    Consumer,
    ConsumerSpec,
    ConsumerStats,
    Delivery,
    Outcome,
)
from assetsync.bus.errors import MSG_ID, BusError, HaltError, PublishError, TransientError, subject_kind
from assetsync.bus.publisher import Publisher
from assetsync.bus.streams import connect, ensure_streams, jetstream

__all__ = [
    "MSG_ID",
    "BatchHandler",
    "BusError",
    "Consumer",
    "ConsumerSpec",
    "ConsumerStats",
    "Delivery",
    "HaltError",
    "Outcome",
    "PublishError",
    "Publisher",
    "TransientError",
    "connect",
    "ensure_streams",
    "jetstream",
    "subject_kind",
]
