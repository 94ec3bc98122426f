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

import re
from dataclasses import dataclass
from typing import Final

# --- Redis: the pipeline -----------------------------------------------------------------
DEDUP_KEY_PREFIX: Final = "dedup:"
EXPIRED_CHANNEL: Final = "__keyevent@{db}__:expired"

#: Sorted set of registered keys waiting to expire; member = key, score = deadline (unix ms).
#: Written by the ``expiry_register`` functions together with the key itself.
EXPIRY_DUE: Final = "expiry:due"
#: Sorted set of claimed keys not yet handled; member = lease (see ``lease_member``),
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
FN_VERSION: Final = "expiry_library_version"

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


def lease_member(claim_id: str, deadline: str, test_id: str, key: str) -> str:
    """The ``expiry:leases`` member of one claim; the key goes last (it may contain ``|``)."""
    return f"{claim_id}|{deadline}|{test_id}|{key}"


def split_lease(member: str) -> tuple[str, str]:
    """A lease member as (claim header, key): what a message's header and body carry."""
    claim, deadline, test_id, key = member.split("|", 3)
    return f"{claim}|{deadline}|{test_id}", key


def parse_lease(member: str) -> tuple[str, str, str, str] | None:
    """(claim id, deadline, test id, key) of a lease member, or None when malformed."""
    parts = member.split("|", 3)
    if len(parts) != 4 or not parts[0].isdigit() or not parts[3]:
        return None
    if parts[1] and not parts[1].isdigit():
        return None
    return parts[0], parts[1], parts[2], parts[3]


def msg_id(claim_id: str, generation: str = "") -> str:
    """The JetStream ``Nats-Msg-Id`` of a claim's message.

    A republished claim gets a new ``generation`` so that JetStream's duplicate window does not
    drop it; a second delivery of one claim is recognised by its lease, not by this id.
    """
    return f"claim-{claim_id}" if not generation else f"claim-{claim_id}.{generation}"


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
