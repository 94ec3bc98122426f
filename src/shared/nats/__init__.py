"""NATS JetStream for trio: connecting (``connect``), the work queue's stream and consumer
(``topology``), publishing (``publish``), pulling and settling (``pull``), all behind the
``JetStream`` gateway; every private access to nats-py is in ``_internals``, checked at import.
"""

from shared.nats.jetstream import JetStream
from shared.nats.pull import JetStreamMessage

__all__ = ["JetStream", "JetStreamMessage"]
