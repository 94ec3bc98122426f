"""``CLUSTER NODES``, read once: which node serves which slots, as what, and how it is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``: ``<id> <ip:port@cport[,hostname]> <flags> <master>
    <ping> <pong> <epoch> <link> <slot ranges...>``."""

    #: The announced hostname if any (what a TLS certificate names), else the IP ("" when the
    #: node does not know its own IP yet).
    host: str
    port: int
    flags: frozenset[str]
    #: The slot ranges it serves (importing and migrating entries, ``[...]``, are not).
    slots: tuple[tuple[int, int], ...]

    @property
    def master(self) -> bool:
        return "master" in self.flags

    @property
    def replica(self) -> bool:
        return "slave" in self.flags

    @property
    def failed(self) -> bool:
        """A majority of masters agreed it is down (``fail``; ``fail?`` is one node's doubt)."""
        return "fail" in self.flags

    @property
    def myself(self) -> bool:
        """The node that answered."""
        return "myself" in self.flags

    def serves(self, slot: int) -> bool:
        """Whether ``slot`` is in one of its ranges."""
        return any(first <= slot <= last for first, last in self.slots)


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """The nodes of a ``CLUSTER NODES`` reply (lines it cannot read are left out)."""
    nodes = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        endpoint, _, bus = fields[1].partition("@")
        ip, _, port = endpoint.rpartition(":")
        if not port.isdigit():
            continue
        # After the bus port: ",hostname", then (Redis 7.2+) ",name=value" auxiliary fields.
        _, *extras = bus.split(",")
        hostname = extras[0] if extras and "=" not in extras[0] else ""
        ranges = []
        for entry in fields[8:]:
            if not entry.startswith("["):
                first, _, last = entry.partition("-")
                ranges.append((int(first), int(last or first)))
        nodes.append(
            ClusterNode(hostname or ip, int(port), frozenset(fields[2].split(",")), tuple(ranges))
        )
    return nodes
