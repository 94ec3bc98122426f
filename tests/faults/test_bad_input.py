"""Bad input from outside: arbitrary request bodies, and foreign keys expiring in Redis.

The start endpoint is fuzzed against the running generator: whatever the body, content type or
size, a body that is not a valid test configuration (by the contract in docs/API.md, checked
here independently of the generator's code) answers 4xx with a JSON ``error`` and starts
nothing. Keys that are not this test's keys expire in the middle of a real run: they are
ignored, the consumers stay ready, and the run is still exactly once.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dev.local_system import LocalSystem, http_json, wait_until
from shared import names
from tests.support import (
    check_every_key,
    check_jetstream_settled,
    consumer_metrics,
    prometheus_value,
    wait_generated,
)

MAX_BODY = 16 * 1024

#: The contract of POST /api/start (docs/API.md): field -> allowed range.
LIMITS = {
    "num_keys": (1, 1_000_000),
    "key_delay": (0, 60_000),
    "key_ttl": (1, 3_600_000),
    "dedup_window": (1, 86_400_000),
}

CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/octet-stream",
    "application/json; charset=klingon",
    None,
]


def is_json(content_type: str | None) -> bool:
    """Whether the content type says JSON (the only one the control API takes)."""
    return (content_type or "").split(";")[0].strip().lower() == "application/json"


def is_valid_config(value: Any) -> bool:
    """Whether the decoded JSON ``value`` is a configuration the API must accept."""
    if value is None:
        return True  # no body: every field takes its default
    if not isinstance(value, dict):
        return False
    for field, number in value.items():
        if field not in LIMITS or isinstance(number, bool):
            return False
        if isinstance(number, float):
            if not number.is_integer():  # also false for inf and nan
                return False
            number = int(number)
        elif not isinstance(number, int):
            return False
        low, high = LIMITS[field]
        if not low <= number <= high:
            return False
    return True


def is_valid_body(raw: bytes) -> bool:
    """Whether the raw body would start a test (empty, or JSON of a valid configuration)."""
    if not raw.strip():
        return True
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return is_valid_config(value)


def post(
    system: LocalSystem,
    path: str,
    body: bytes | Iterator[bytes],
    content_type: str | None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """POST exactly these bytes (http.client adds no content type of its own)."""
    assert system.generator_port
    connection = http.client.HTTPConnection("127.0.0.1", system.generator_port, timeout=15)
    try:
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        chunked = not isinstance(body, bytes)
        # The server may answer (413) and close before the whole body is sent: its answer
        # waits in the socket, read below as any HTTP client reads an early one.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.request("POST", path, body=body, headers=all_headers, encode_chunked=chunked)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        connection.close()


def assert_refused(system: LocalSystem, status: int, content_type: str, raw: bytes) -> None:
    assert 400 <= status < 500, (status, raw[:500])
    assert content_type.startswith("application/json"), (status, content_type, raw[:500])
    answer = json.loads(raw)
    assert isinstance(answer, dict), answer
    assert isinstance(answer.get("error"), str) and answer["error"], answer


def current_test(system: LocalSystem) -> Any:
    status = system.status()
    assert not status["is_running"], status
    return status["test_id"]


# --- strategies ---------------------------------------------------------------------------
EDGE_NUMBERS = st.sampled_from(
    [
        10**400,
        -(10**400),
        1e308,
        -1e308,
        1.7976931348623157e308,
        5e-324,
        2**63,
        2**64 + 1,
        -1,
        0,
        0.5,
        1e6 + 0.5,
        1_000_001,
        60_001,
        86_400_001,
        math.inf,
        -math.inf,
        math.nan,
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | EDGE_NUMBERS
    | st.text(max_size=30)
    | st.sampled_from(["100", "1e3", "0x10", "", "\uff11\uff12\uff13", "\u0000", "NaN"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_NAMES = (
    st.sampled_from(sorted(LIMITS))
    | st.sampled_from(
        ["NUM_KEYS", "num_keys ", "numKeys", "keys", "__proto__", "constructor", "", "ключи", "🔑"]
    )
    | st.text(max_size=20)
)
CONFIG_LIKE = st.dictionaries(FIELD_NAMES, SCALARS | JSON_VALUES, min_size=1, max_size=6)


def encode(value: Any, ensure_ascii: bool, indent: int | None) -> bytes:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent).encode()


@given(
    body=CONFIG_LIKE | JSON_VALUES,
    content_type=st.sampled_from(CONTENT_TYPES),
    ensure_ascii=st.booleans(),
    indent=st.none() | st.just(2),
)
@settings(max_examples=150)
def test_any_json_that_is_not_a_valid_config_is_refused_and_starts_nothing(
    local_system: LocalSystem,
    body: Any,
    content_type: str | None,
    ensure_ascii: bool,
    indent: int | None,
) -> None:
    raw = encode(body, ensure_ascii, indent)
    assume(not is_valid_body(raw) and len(raw) <= MAX_BODY)
    before = current_test(local_system)
    status, answer_type, answer = post(local_system, "/api/start", raw, content_type)
    assert_refused(local_system, status, answer_type, answer)
    # Without an API token only JSON is taken (other types need no preflight from a page).
    assert status == (400 if is_json(content_type) else 415), (status, content_type, answer)
    assert current_test(local_system) == before


@given(
    raw=st.binary(max_size=2048)
    | st.sampled_from(
        [
            b'{"num_keys": 1' + b"0" * 5000 + b"}",
            b'{"num_keys": 1e400}',
            b'{"num_keys": -Infinity}',
            b'{"num_keys": NaN}',
            b'{"num_keys": 10, "num_keys": "ten"}',
            b'{"num_keys": 10,}',
            '{"num_keys": 10}'.encode("utf-16"),
            b'\xef\xbb\xbf{"num_keys": "10"}',
            b'{"num_keys": 10}\x00',
            b"\x00\x00\x00{",
        ]
    ),
    content_type=st.sampled_from(CONTENT_TYPES),
)
@settings(max_examples=150)
def test_raw_bytes_that_are_not_a_valid_config_are_refused_and_start_nothing(
    local_system: LocalSystem, raw: bytes, content_type: str | None
) -> None:
    assume(not is_valid_body(raw))
    before = current_test(local_system)
    status, answer_type, answer = post(local_system, "/api/start", raw, content_type)
    assert_refused(local_system, status, answer_type, answer)
    assert current_test(local_system) == before


@given(
    size=st.integers(MAX_BODY + 1, 300_000),
    filler=st.sampled_from([b" ", b"\n", b"x", b"\xff"]),
    content_type=st.sampled_from(CONTENT_TYPES),
    chunked=st.booleans(),
)
@settings(max_examples=40)
def test_oversized_bodies_are_refused_even_when_the_config_in_them_is_valid(
    local_system: LocalSystem, size: int, filler: bytes, content_type: str | None, chunked: bool
) -> None:
    valid = b'{"num_keys": 10}'
    # Whitespace after a valid object keeps it valid: only the size is wrong.
    raw = valid + filler * (size - len(valid))
    before = current_test(local_system)
    body: bytes | Iterator[bytes] = raw
    if chunked:  # no Content-Length: the limit must hold while reading, too
        body = iter([raw[i : i + 8192] for i in range(0, len(raw), 8192)])
    status, answer_type, answer = post(local_system, "/api/start", body, content_type)
    assert_refused(local_system, status, answer_type, answer)
    assert status == 413, (status, answer)
    assert current_test(local_system) == before


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 3000 + b"]" * 3000,
        b'{"num_keys":' * 1200 + b"1" + b"}" * 1200,
        b"[" * 8000,
    ],
    ids=["nested-arrays", "nested-objects", "unclosed-arrays"],
)
def test_deeply_nested_json_under_the_size_limit_is_refused_with_400(
    local_system: LocalSystem, raw: bytes
) -> None:
    assert len(raw) <= MAX_BODY
    before = current_test(local_system)
    status, answer_type, answer = post(local_system, "/api/start", raw, "application/json")
    assert current_test(local_system) == before
    assert_refused(local_system, status, answer_type, answer)


def test_a_body_of_exactly_the_limit_is_accepted(local_system: LocalSystem) -> None:
    valid = b'{"num_keys": 10, "key_delay": 0}'
    raw = valid + b" " * (MAX_BODY - len(valid))
    assert len(raw) == MAX_BODY
    before = current_test(local_system)
    status, _, answer = post(local_system, "/api/start", raw, "application/json")
    assert status == 200, answer
    assert json.loads(answer)["test_id"] != before
    assert local_system.wait_test_end(timeout=60)["verdict"]["exactly_once"] is True


# --- foreign keys in the expired channel -----------------------------------------------------
IGNORED = "expiry_pipeline_expiry_events_total"

#: Names no consumer hands to the handler: outside KEY_PATTERNS (gen-key:*), the pipeline's own,
#: not UTF-8, or too long for a message.
IGNORED_NAMES: list[bytes] = [
    b"other:1",
    b"cart:abc",
    b"gen-key",
    b"GEN-KEY:1",
    b"gen-key:" + b"9" * 100_000,
    b"x" * 100_000,
    b"\x00\xff\xfe\xfd",
    b"\xc3\x28 invalid utf-8",
    b"gen-key:\xff",
    b"dedup:gen-key:1",
]
#: Names that match gen-key:* but are not the test's keys (nobody registered them): handled once
#: each as any application's keys, never counted into the test.
FOREIGN_GEN_KEYS: list[bytes] = [
    b"gen-key:",
    b"gen-key:abc",
    b"gen-key:007",
    b"gen-key:-1",
    b"gen-key:+1",
    b"gen-key:1.5",
    b"gen-key: 1",
    b"gen-key:1 ",
    b"gen-key:1\r\n",
    b"gen-key:\x00",
    b"gen-key:12\x0034",
    b"gen-key:1234567890123456789",  # 19 digits
    "gen-key:\u0661\u0662".encode(),  # Arabic-Indic digits
    "gen-key:\uff11\uff12".encode(),  # full-width digits
    b"gen-key:999999999999",
    b"gen-key:100000000000000000",
]


def test_foreign_and_malformed_expiring_keys_never_disturb_the_test(
    local_system: LocalSystem,
) -> None:
    client = redis.Redis.from_url(local_system.redis_url or "")
    consumers = range(len(local_system.consumer_processes))
    ignored_before = [
        prometheus_value(consumer_metrics(local_system, i), IGNORED, kind="ignored")
        for i in consumers
    ]
    current_test(local_system)
    started = local_system.start_test(num_keys=3000, key_delay=1)
    wait_generated(local_system, 800)
    pipe = client.pipeline(transaction=False)
    for number, name in enumerate(IGNORED_NAMES):
        pipe.set(name, b"foreign", px=20 + number * 5)
    for name in FOREIGN_GEN_KEYS:
        pipe.set(name, b"foreign", px=30)
    # A second expiry of keys already consumed, written by someone else: never the test's.
    for seq in range(50):
        pipe.set(names.gen_key(seq), b"again", px=40)
    pipe.execute()
    status = local_system.wait_test_end(timeout=120)
    outside_test = int(client.get(names.METRICS_CONSUMED) or 0) - int(
        client.get(names.TEST_COUNTED) or 0
    )
    # Each foreign key handled once; a rewritten key of the test once more at most (within
    # the dedup window its second expiry counts as the same one).
    assert len(FOREIGN_GEN_KEYS) <= outside_test <= len(FOREIGN_GEN_KEYS) + 50
    assert status["test_id"] == started["test_id"]
    assert status["state"] == "finished", local_system.logs()
    assert status["generated"] == 3000
    check_every_key(local_system, status)
    check_jetstream_settled(local_system)
    for index in consumers:
        port = local_system.health_ports[index]

        def ready(port: int = port) -> bool:
            return bool(http_json(f"http://127.0.0.1:{port}/readyz", timeout=2)["ready"])

        wait_until(ready, 10, f"consumer {index} ready")
        process = local_system.consumer_processes[index]
        assert process.running
        assert "Traceback" not in process.log_text(), process.log_text()[-3000:]
    # Redis sends the listeners only names matching gen-key:*; of those, the one too long for
    # a message and the one that is not UTF-8 are dropped by the listener that heard them.
    unusable = 2

    def dropped() -> bool:
        grown = [
            prometheus_value(consumer_metrics(local_system, i), IGNORED, kind="ignored")
            - ignored_before[i]
            for i in consumers
        ]
        return sum(grown) >= unusable

    wait_until(dropped, 10, "the listeners dropping the unusable names")


def test_keys_deleted_persisted_renamed_or_extended_by_others_are_still_consumed_once(
    local_system: LocalSystem,
) -> None:
    """No expiry event comes for a key someone deletes, renames or makes persistent, and a late
    one for a key whose TTL someone extends: the sweepers must find them, once each."""
    client = redis.Redis.from_url(local_system.redis_url or "", decode_responses=True)
    current_test(local_system)
    started = local_system.start_test(num_keys=3000, key_delay=1)
    wait_generated(local_system, 300)
    touched = {"deleted": 0, "persisted": 0, "extended": 0, "renamed": 0}
    for _ in range(30):
        newest = int(client.get(names.METRICS_GENERATED) or 0) - 1
        pipe = client.pipeline(transaction=False)
        pipe.delete(names.gen_key(newest))
        pipe.persist(names.gen_key(newest - 1))
        pipe.pexpire(names.gen_key(newest - 2), 3000)
        pipe.rename(names.gen_key(newest - 3), f"moved:{newest - 3}")
        for kind, done in zip(touched, pipe.execute(raise_on_error=False), strict=True):
            touched[kind] += done is True or done == 1
        time.sleep(0.05)
    # Each fresh key lives 100 ms, so nearly every touch lands before it expires.
    assert all(count >= 20 for count in touched.values()), touched
    status = local_system.wait_test_end(timeout=120)
    assert status["test_id"] == started["test_id"]
    assert status["state"] == "finished", local_system.logs()
    check_every_key(local_system, status)
    check_jetstream_settled(local_system)
    no_event = touched["deleted"] + touched["persisted"] + touched["renamed"]
    assert status["recovered"] >= no_event, (status["recovered"], touched)
