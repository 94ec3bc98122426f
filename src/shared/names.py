"""Every Redis key and NATS name the system uses, on one screen.

Two layers share one Redis:

* the **pipeline** (any application's expiring keys): claim records ``dedup:<key>``, the
  registry of announced deadlines ``expiry:due``, the leases of claimed keys not yet handled
  ``expiry:leases``, dead letters, and the seed-compatible counters ``metrics:consumed`` and
  ``metrics:consumer:<id>``;
* the **load test** that uses it: ``test:*`` keys describing the current test and recording,
  key by key, what was consumed. Per-test keys are listed in ``PER_TEST_KEYS`` so that a new
  test clears what an earlier one left without scanning the keyspace with ``KEYS``.
"""

import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Final, TypeVar

T = TypeVar("T")

# --- Redis: the pipeline -----------------------------------------------------------------
DEDUP_KEY_PREFIX: Final = "dedup:"
EXPIRED_CHANNEL: Final = "__keyevent@{db}__:expired"
#: The keyspace event announcing an expiry, and those telling of a key's deadline: armed or
#: moved (``expire``), removed (``persist``), the key gone (``del``, ``rename_from``) or arrived
#: under a new name (``rename_to``). Redis sends the latter with ``g`` in notify-keyspace-events.
EXPIRED_EVENT: Final = "expired"
DEADLINE_EVENTS: Final = frozenset({"expire", "persist", "del", "rename_from", "rename_to"})
#: Not a Redis event: the fleet's own word that a registered key's deadline has come
#: (``consumer.timers``), so that it is claimed at once instead of when Redis announces it.
DUE_EVENT: Final = "due"
#: The events that claim an expiry (each brings the key's dedup key to ``HEAR``).
FIRING_EVENTS: Final = frozenset({EXPIRED_EVENT, DUE_EVENT})

#: Sorted set of registered keys waiting to expire; member = key, score = deadline (unix ms).
#: Written by the ``expiry_register`` functions together with the key itself.
EXPIRY_DUE: Final = "expiry:due"
#: Sorted set of claimed keys not yet handled; member = lease (see ``shared.lease``),
#: score = lease end (unix ms). A lease that runs out is republished by a sweeper.
EXPIRY_LEASES: Final = "expiry:leases"
#: Counter handing out claim ids (one per claim; a claim id is a message's identity).
EXPIRY_CLAIM_SEQ: Final = "expiry:claim_seq"
#: List of the latest dead letters, newest first, as JSON records.
EXPIRY_DEAD_LETTERS: Final = "expiry:dead_letters"
#: How many dead-letter records ``EXPIRY_DEAD_LETTERS`` keeps.
DEAD_LETTERS_KEPT: Final = 1000
#: Prefixes of the pipeline's own keys: never handled as an application's key.
INTERNAL_PREFIXES: Final = (DEDUP_KEY_PREFIX, "expiry:")


def listener_slot(fleet: str, index: int) -> str:
    """Listener slot ``index`` of ``fleet``: held (a lease) by the consumer that listens in it."""
    return f"expiry:{{listeners{':' + fleet if fleet else ''}}}:slot:{index}"


def listeners_held(fleet: str) -> str:
    """Hash consumer id -> lease end (unix ms) of the consumers of ``fleet`` that listen now."""
    return f"expiry:{{listeners{':' + fleet if fleet else ''}}}:held"


#: The Redis function library producers call to register keys (``FCALL expiry_register``).
FUNCTION_LIBRARY: Final = "expiry_pipeline"
FN_REGISTER: Final = "expiry_register"
FN_REGISTER_MANY: Final = "expiry_register_many"
#: Registration alone, for a Redis Cluster (where the producer writes the keys afterwards).
FN_REGISTER_DUE: Final = "expiry_register_due"
FN_VERSION: Final = "expiry_library_version"
#: Cancel a key's expiry before it fires / move its deadline (the key and its registration).
FN_CANCEL: Final = "expiry_cancel"
FN_RESCHEDULE: Final = "expiry_reschedule"

METRICS_GENERATED: Final = "metrics:generated"
METRICS_CONSUMED: Final = "metrics:consumed"
METRICS_CONSUMER_PREFIX: Final = "metrics:consumer:"
#: Set of consumer ids that have a ``metrics:consumer:<id>`` count (listed and reset without KEYS).
METRICS_CONSUMERS: Final = "metrics:consumers"
#: Deliveries that found their key already handled (JetStream redelivery or a republish).
METRICS_DUPLICATES: Final = "metrics:duplicates"
#: Keys whose handler failed on every delivery (dead letters).
METRICS_DEAD_LETTERS: Final = "metrics:dead_letters"
#: Keys claimed by the sweeper rather than by an expiry event, and leases taken over.
METRICS_RECOVERED: Final = "metrics:recovered"

# --- Redis: the load test ----------------------------------------------------------------
GEN_KEY_PREFIX: Final = "gen-key:"

#: Hash describing the current test: id, state, config, key prefix, timestamps.
TEST_CURRENT: Final = "test:current"
#: Hash key -> "<consumer id> <delay ms>": the one record of each consumed key of the test.
TEST_CONSUMED: Final = "test:consumed"
#: Hash latency bucket -> count, for live percentiles without reading every key.
TEST_LATENCY: Final = "test:latency"
#: Set of keys that became dead letters in this test.
TEST_DEAD_LETTERS: Final = "test:dead_letters"
#: Set of the test's keys claimed by a sweeper (no expiry event was heard for them, or their
#: lease was taken over): each key once, however often it was taken over.
TEST_RECOVERED: Final = "test:recovered"
#: Completions of the test's keys (a key completed twice counts twice): consumed, per test.
TEST_COUNTED: Final = "test:counted"

PER_TEST_KEYS: Final = (
    METRICS_GENERATED,
    METRICS_CONSUMED,
    METRICS_DUPLICATES,
    METRICS_DEAD_LETTERS,
    METRICS_RECOVERED,
    TEST_CONSUMED,
    TEST_LATENCY,
    TEST_DEAD_LETTERS,
    TEST_COUNTED,
    TEST_RECOVERED,
)

# --- Redis Cluster: slot groups -------------------------------------------------------------
#: Redis Cluster's hash slots; a key's slot is the CRC16 of its name (or of its ``{hash tag}``).
HASH_SLOTS: Final = 16384
#: On a Redis Cluster the pipeline's state is split into this many *slot groups*. Every script
#: touches the keys of one group, and a group's keys share one hash slot (a hash tag): a key's
#: claim record, the registry and leases it is in, the copy of ``test:current`` and the load
#: test's records all live in the group of the key's slot. Group ``i`` takes the slots
#: ``i*1024 .. i*1024+1023``, so its state sits on the master that holds most of its keys.
#: Fixed, not configured: every consumer and producer of a cluster must agree on it.
CLUSTER_GROUPS: Final = 16


def key_slot(key: str) -> int:
    """The hash slot of ``key`` on a Redis Cluster (CRC16/XMODEM of its hash tag or name)."""
    data = key.encode()
    start = data.find(b"{")
    if start >= 0:
        end = data.find(b"}", start + 1)
        if end > start + 1:
            data = data[start + 1 : end]
    return binascii.crc_hqx(data, 0) % HASH_SLOTS


@dataclass(frozen=True)
class SlotGroup:
    """One slot group's Redis names: on one server the plain names (``tag`` empty), on a
    cluster the same names with the group's hash tag after their first ``:``."""

    index: int
    tag: str = ""

    def name(self, base: str) -> str:
        """``base`` (such as ``expiry:due`` or ``dedup:<key>``) in this group."""
        if not self.tag:
            return base
        head, _, tail = base.partition(":")
        return f"{head}:{self.tag}:{tail}"

    def dedup(self, key: str) -> str:
        """The claim record guarding ``key`` (``key`` must belong to this group)."""
        return self.name(dedup_key(key))


def _group_tag(index: int, groups: int) -> str:
    """The first hash tag ``{xp:<index>:<n>}`` whose slot lies in group ``index``'s range."""
    n = 0
    while key_slot(f"xp:{index}:{n}") * groups // HASH_SLOTS != index:
        n += 1
    return f"{{xp:{index}:{n}}}"


@dataclass(frozen=True)
class KeyLayout:
    """Where the pipeline's state lives: one group on one server, ``CLUSTER_GROUPS`` on a
    cluster. Code that touches a key's state asks for the key's group first."""

    groups: tuple[SlotGroup, ...]

    @property
    def cluster(self) -> bool:
        """Whether this is a Redis Cluster's layout (several groups, hash-tagged names)."""
        return len(self.groups) > 1

    def group_of(self, key: str) -> SlotGroup:
        """The group holding ``key``'s claim record, registration and lease."""
        if len(self.groups) == 1:
            return self.groups[0]
        return self.groups[key_slot(key) * len(self.groups) // HASH_SLOTS]

    def by_group(self, keys: Iterable[str]) -> dict[SlotGroup, list[str]]:
        """``keys`` split by group, each part in the order given."""
        return self.split(keys, str)

    def split(self, items: Iterable[T], key: Callable[[T], str]) -> dict[SlotGroup, list[T]]:
        """``items`` split by the group of their ``key``, each part in the order given."""
        parts: dict[SlotGroup, list[T]] = {}
        for item in items:
            parts.setdefault(self.group_of(key(item)), []).append(item)
        return parts

    def every(self, base: str) -> list[str]:
        """``base`` in every group (the one name itself on one server)."""
        return [group.name(base) for group in self.groups]

    @property
    def test_current_copies(self) -> list[str]:
        """Every ``test:current`` hash: the test's record, and on a cluster each group's copy
        (what the group's scripts read). The generator writes all of them alike."""
        if not self.cluster:
            return [TEST_CURRENT]
        return [TEST_CURRENT, *self.every(TEST_CURRENT)]

    def per_test_keys(self) -> list[str]:
        """What a new test clears: ``PER_TEST_KEYS`` in every group (``metrics:generated``, the
        generator's own count, is one key on a cluster too)."""
        grouped = [group.name(key) for key in PER_TEST_KEYS for group in self.groups]
        return [METRICS_GENERATED, *(key for key in grouped if key != METRICS_GENERATED)]

    def on_test_current(self, command: str, *args: str | int) -> list[tuple[str | int, ...]]:
        """``command`` (HSET, DEL) applied to every copy of ``test:current``."""
        return [(command, copy, *args) for copy in self.test_current_copies]

    def unlink(self, keys: Sequence[str]) -> list[tuple[str, ...]]:
        """Commands deleting ``keys``: one on one server, one per key on a cluster (keys of
        different slots cannot share a command there)."""
        if not keys:
            return []
        if not self.cluster:
            return [("UNLINK", *keys)]
        return [("UNLINK", key) for key in keys]


#: The layout of a single Redis server: the names above, unchanged.
SINGLE_SERVER: Final = KeyLayout((SlotGroup(0),))


@cache
def cluster_layout(groups: int = CLUSTER_GROUPS) -> KeyLayout:
    """The layout of a Redis Cluster: ``groups`` slot groups."""
    return KeyLayout(tuple(SlotGroup(i, _group_tag(i, groups)) for i in range(groups)))


# --- NATS JetStream ----------------------------------------------------------------------
STREAM: Final = "WORKGROUPPOLICY"
SUBJECT: Final = "Stream.Workgroup.Policy.Events"
DURABLE: Final = "key_expiration_processors"
MAX_DELIVER: Final = 3
ACK_WAIT_S: Final = 5.0
STREAM_MAX_AGE_S: Final = 24 * 3600
#: A fleet name: a second fleet (other keys, another handler) gets a queue of its own.
FLEET_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Queue:
    """The JetStream names of one fleet's work queue."""

    stream: str
    subject: str
    durable: str


def queue_of(fleet: str = "") -> Queue:
    """The work queue of ``fleet``; the design's names for the default fleet ("")."""
    if not fleet:
        return Queue(STREAM, SUBJECT, DURABLE)
    if not FLEET_NAME_RE.fullmatch(fleet):
        raise ValueError(f"fleet name {fleet!r} must be 1-32 of a-z 0-9 _ - (lower case)")
    return Queue(
        f"{STREAM}_{fleet.upper().replace('-', '_')}", f"{SUBJECT}.{fleet}", f"{DURABLE}_{fleet}"
    )


#: Header carrying the claim of a message: its lease member without the key (the body),
#: ``<claim id>|<deadline>|<test id>``, so that key names need not fit in a header.
CLAIM_HEADER: Final = "Expiry-Claim"
#: Longest key name handled: a claim's message must fit JetStream's payload limit.
MAX_KEY_BYTES: Final = 64 * 1024


def gen_key(seq: int) -> str:
    """The Redis key name of generated key number ``seq``."""
    return f"{GEN_KEY_PREFIX}{seq}"


def dedup_key(key: str) -> str:
    """The claim record guarding ``key``."""
    return f"{DEDUP_KEY_PREFIX}{key}"


def consumer_count_key(consumer_id: str) -> str:
    """The per-consumer count of consumed keys."""
    return f"{METRICS_CONSUMER_PREFIX}{consumer_id}"


def claim_identity(claim_id: str, group: SlotGroup | None = None) -> str:
    """A claim's id, unique in the whole system (what handlers key their side effects on): on a
    cluster each slot group counts its own claim ids, so the group's tag leads
    (``{xp:3:12}1795653…``); on one server, the id itself."""
    return claim_id if group is None else f"{group.tag}{claim_id}"


def msg_id(claim_id: str, generation: str = "", group: SlotGroup | None = None) -> str:
    """The JetStream ``Nats-Msg-Id`` of a claim's message.

    A republished claim gets a new ``generation`` so that JetStream's duplicate window does not
    drop it; a second delivery of one claim is recognised by its lease, not by this id.
    """
    base = f"claim-{claim_identity(claim_id, group)}"
    return base if not generation else f"{base}.{generation}"


def expired_channel(db: int) -> str:
    """The keyevent channel on which Redis announces expirations in database ``db``."""
    return EXPIRED_CHANNEL.format(db=db)


def keyspace_channels(db: int, patterns: tuple[str, ...]) -> str:
    """The keyspace channel patterns of ``patterns``' keys in database ``db`` (``,,``-joined).

    Listening there (``notify-keyspace-events`` with ``K``), Redis sends only the events of
    matching keys: not the dedup records' own expiries, nor other applications' keys.
    """
    return ",,".join(f"__keyspace@{db}__:{pattern}" for pattern in patterns)


def is_internal(key: str) -> bool:
    """Whether ``key`` is one of the pipeline's own keys (never an application's)."""
    return key.startswith(INTERNAL_PREFIXES)


def parse_gen_key(raw: bytes) -> int | None:
    """The sequence number of a ``gen-key:<n>`` name, or None for any other name.

    Only canonical decimal numbers count (no sign, no leading zeros, at most 18 digits), so a
    key name maps to exactly one number and back.
    """
    if not raw.startswith(b"gen-key:"):
        return None
    digits = raw[8:]
    if not digits or len(digits) > 18 or not digits.isdigit():
        return None
    if len(digits) > 1 and digits[0:1] == b"0":
        return None
    return int(digits)
