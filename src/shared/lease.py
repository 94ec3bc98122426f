"""A claim's lease: what ``expiry:leases`` holds and a claim's message carries, in one format.

The claim scripts write a lease member as ``<claim id>|<deadline>|<test id>|<key>`` (the
deadline empty for a key nobody registered, the key last since it may contain ``|``); a
message carries the part before the key in its ``Expiry-Claim`` header and the key as its body.
``Lease`` is the one reader and writer of that format in Python; the Lua one is ``parse_lease``
in the scripts' prelude, and a test holds the two to the same answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

SEPARATOR = "|"


@dataclass(frozen=True, slots=True)
class Lease:
    """One claim of one key."""

    #: The claim's id, counted by its slot group (digits).
    claim_id: str
    #: The key's registered deadline (unix ms, digits), or "" for a key nobody registered.
    deadline: str
    #: The load test the key belongs to, or "" / "-" for an application's key.
    test_id: str
    key: str

    @classmethod
    def parse(cls, member: str) -> Self | None:
        """The lease ``member`` stands for, or None when it is malformed."""
        parts = member.split(SEPARATOR, 3)
        if len(parts) != 4:
            return None
        claim_id, deadline, test_id, key = parts
        if not claim_id.isdigit() or not key or (deadline and not deadline.isdigit()):
            return None
        return cls(claim_id, deadline, test_id, key)

    @property
    def member(self) -> str:
        """The ``expiry:leases`` member."""
        return SEPARATOR.join((self.claim_id, self.deadline, self.test_id, self.key))

    @property
    def header(self) -> str:
        """The claim as a message's ``Expiry-Claim`` header carries it (all but the key)."""
        return SEPARATOR.join((self.claim_id, self.deadline, self.test_id))


def member_of(header: str, key: str) -> str:
    """The lease member of a message: its claim header and its body (the key)."""
    return f"{header}{SEPARATOR}{key}"


def key_of(member: str) -> str:
    """The key a lease member is for (without checking the rest)."""
    return member.split(SEPARATOR, 3)[-1]


def deadline_of(member: str) -> str:
    """The registered deadline a lease member carries ("" for none), without checking the rest."""
    parts = member.split(SEPARATOR, 2)
    return parts[1] if len(parts) == 3 else ""
