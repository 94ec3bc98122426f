"""KEY_PATTERNS: Redis glob patterns, matched in the listener exactly as Redis matches them."""

import contextlib

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from dev.local_system import RedisServer
from shared.patterns import KeyPatterns, PatternError, glob_to_regex

NAMES = [
    "gen-key:1",
    "gen-key:",
    "gen-key:x",
    "gen-keys:1",
    "xgen-key:1",
    "session:42",
    "session:4",
    "session:a2",
    "sess*ion",
    "sess?",
    "a[b",
    "lease:b:7",
    "lease:c:7",
    "lease:-:7",
    "dedup:gen-key:1",
    "expiry:due",
    "",
]
PATTERNS = [
    "gen-key:*",
    "session:?2",
    "session:[0-9]*",
    "lease:[^c]:*",
    "lease:[a-c]:7",
    "sess\\*ion",
    "sess\\?",
    "a\\[b",
    "*",
    "*:1",
]


def test_the_listener_matches_what_redis_itself_matches(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    for name in NAMES:
        if name:
            client.set(name, "x")
    for pattern in PATTERNS:
        by_redis = {k for k in client.keys(pattern) if not k.startswith(("dedup:", "expiry:"))}
        ours = {name for name in NAMES if name and KeyPatterns([pattern]).matches(name)}
        assert ours == by_redis, pattern


def test_the_pipeline_s_own_keys_never_match() -> None:
    patterns = KeyPatterns(["*"])
    assert patterns.select([b"dedup:gen-key:1", b"expiry:leases", b"gen-key:1"]) == ["gen-key:1"]


def test_names_that_are_not_utf8_are_skipped() -> None:
    assert KeyPatterns(["gen-key:*"]).select([b"gen-key:\xff", b"gen-key:2"]) == ["gen-key:2"]


def test_several_patterns_match_any() -> None:
    patterns = KeyPatterns(["gen-key:*", "session:*"])
    assert patterns.select([b"gen-key:1", b"order:1", b"session:x"]) == ["gen-key:1", "session:x"]


def test_an_unclosed_class_is_refused() -> None:
    with pytest.raises(PatternError, match="unclosed"):
        glob_to_regex("gen-key:[1")


@given(st.text(alphabet="ab*?[]^\\-:", max_size=8), st.text(alphabet="ab:-", max_size=8))
def test_translation_never_crashes_and_a_literal_matches_itself(pattern: str, name: str) -> None:
    with contextlib.suppress(PatternError):
        KeyPatterns([pattern]).matches(name)
    literal = "".join("\\" + c if c in "*?[\\" else c for c in name)
    if name:
        assert KeyPatterns([literal]).matches(name)
