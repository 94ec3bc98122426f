from hypothesis import given
from hypothesis import strategies as st

from shared import names


def test_gen_key_round_trip() -> None:
    for seq in (0, 1, 9, 10, 123456789):
        assert names.parse_gen_key(names.gen_key(seq).encode()) == seq


def test_dedup_and_counter_names_follow_the_contract() -> None:
    assert names.dedup_key("gen-key:7") == "dedup:gen-key:7"
    assert names.consumer_count_key("c-1") == "metrics:consumer:c-1"
    assert names.msg_id("7") == "claim-7"
    assert names.msg_id("7", "1700000000000") == "claim-7.1700000000000"


def test_a_lease_names_its_claim_and_the_key_goes_last() -> None:
    member = names.lease_member("12", "1700000000000", "t-1", "odd|key")
    assert names.parse_lease(member) == ("12", "1700000000000", "t-1", "odd|key")
    assert names.parse_lease(names.lease_member("3", "", "", "k")) == ("3", "", "", "k")
    for bad in ("", "x|1|t|k", "1|1|t|", "1|soon|t|k", "1|2|t"):
        assert names.parse_lease(bad) is None, bad
    assert names.expired_channel(0) == "__keyevent@0__:expired"


def test_foreign_and_malformed_names_are_not_gen_keys() -> None:
    for raw in (
        b"dedup:gen-key:1",
        b"gen-key:",
        b"gen-key:-1",
        b"gen-key:+1",
        b"gen-key:01",
        b"gen-key:1a",
        b"gen-key:1 ",
        b"gen-key:\xd9\xa1",  # an Arabic-Indic digit
        b"gen-key:" + b"9" * 19,
        b"GEN-KEY:1",
        b"other:1",
        b"\x00\xff",
        b"",
    ):
        assert names.parse_gen_key(raw) is None, raw


@given(st.binary(max_size=64))
def test_parsing_never_fails_and_only_accepts_canonical_numbers(raw: bytes) -> None:
    seq = names.parse_gen_key(raw)
    if seq is not None:
        assert names.gen_key(seq).encode() == raw
