"""A delivery from the work queue and the claim it carries."""

from __future__ import annotations

from dataclasses import dataclass

from consumer.handler import ExpiredKey
from shared import names
from shared.lease import Lease
from shared.nats import JetStreamMessage


@dataclass(frozen=True)
class Delivery:
    """A message and the claim it carries."""

    message: JetStreamMessage
    claim_id: str
    deadline: str
    test_id: str

    @property
    def event(self) -> ExpiredKey:
        """What the handler is given."""
        return ExpiredKey(
            key=self.message.key,
            deadline_ms=int(self.deadline) if self.deadline else None,
            attempt=self.message.delivered,
            test_id=self.test_id or None,
            claim_id=self.claim_id,
        )


def parse_delivery(
    message: JetStreamMessage, layout: names.KeyLayout = names.SINGLE_SERVER
) -> Delivery | None:
    """The claim ``message`` carries, or None when it is malformed (a poison message)."""
    lease = Lease.parse(message.lease)
    if lease is None or lease.key != message.key:
        return None
    identity = names.claim_identity(lease.claim_id, layout.group_of(message.key))
    return Delivery(message, identity, lease.deadline, lease.test_id)
