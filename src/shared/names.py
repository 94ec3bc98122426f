"""Every Redis key and NATS name the system uses, on one screen.

Per-test keys are listed in ``PER_TEST_KEYS`` so that a new test can clear what an earlier one
left behind without scanning the keyspace with ``KEYS``.
"""

from typing import Final

# --- Redis -------------------------------------------------------------------------------
GEN_KEY_PREFIX: Final = "gen-key:"
DEDUP_KEY_PREFIX: Final = "dedup:"
EXPIRED_CHANNEL: Final = "__keyevent@{db}__:expired"

METRICS_GENERATED: Final = "metrics:generated"
METRICS_CONSUMED: Final = "metrics:consumed"
METRICS_CONSUMER_PREFIX: Final = "metrics:consumer:"
#: Set of consumer ids that have a ``metrics:consumer:<id>`` count (listed and reset without KEYS).
METRICS_CONSUMERS: Final = "metrics:consumers"
#: Deliveries that found their key already counted (JetStream redelivery or a republish).
METRICS_DUPLICATES: Final = "metrics:duplicates"
#: Keys whose processing failed on every delivery (dead letters).
METRICS_DEAD_LETTERS: Final = "metrics:dead_letters"
#: Keys claimed by the sweeper rather than by an expiry event.
METRICS_RECOVERED: Final = "metrics:recovered"

#: Hash describing the current test: id, state, config, timestamps.
TEST_CURRENT: Final = "test:current"
#: Sorted set of generated keys waiting to be claimed; score = TTL deadline (unix ms).
TEST_PENDING: Final = "test:pending"
#: Sorted set of claimed keys not yet consumed; member = "<key>|<deadline ms>", score = lease end.
TEST_INFLIGHT: Final = "test:inflight"
#: Hash key -> "<consumer id> <delay ms>": the one record of each consumed key.
TEST_CONSUMED: Final = "test:consumed"
#: Hash latency bucket -> count, for live percentiles without reading every key.
TEST_LATENCY: Final = "test:latency"
#: Set of keys that became dead letters in this test.
TEST_DEAD_LETTERS: Final = "test:dead_letters"

PER_TEST_KEYS: Final = (
    METRICS_GENERATED,
    METRICS_CONSUMED,
    METRICS_DUPLICATES,
    METRICS_DEAD_LETTERS,
    METRICS_RECOVERED,
    TEST_PENDING,
    TEST_INFLIGHT,
    TEST_CONSUMED,
    TEST_LATENCY,
    TEST_DEAD_LETTERS,
)

# --- NATS JetStream ----------------------------------------------------------------------
STREAM: Final = "WORKGROUPPOLICY"
SUBJECT: Final = "Stream.Workgroup.Policy.Events"
DURABLE: Final = "key_expiration_processors"
MAX_DELIVER: Final = 3
ACK_WAIT_S: Final = 5.0
STREAM_MAX_AGE_S: Final = 24 * 3600
#: Header carrying the key's TTL deadline (unix ms) so consumption delay can be measured.
DEADLINE_HEADER: Final = "Key-Deadline"
TEST_HEADER: Final = "Test-Id"


def gen_key(seq: int) -> str:
    """The Redis key name of generated key number ``seq``."""
    return f"{GEN_KEY_PREFIX}{seq}"


def dedup_key(key: str) -> str:
    """The dedup key guarding ``key``."""
    return f"{DEDUP_KEY_PREFIX}{key}"


def consumer_count_key(consumer_id: str) -> str:
    """The per-consumer count of consumed keys."""
    return f"{METRICS_CONSUMER_PREFIX}{consumer_id}"


def msg_id(test_id: str, key: str) -> str:
    """The JetStream ``Nats-Msg-Id`` of ``key`` in test ``test_id``."""
    return f"{test_id}:{key}"


def expired_channel(db: int) -> str:
    """The keyevent channel on which Redis announces expirations in database ``db``."""
    return EXPIRED_CHANNEL.format(db=db)


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
