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


def test_the_expired_channel_is_per_database() -> None:
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


def test_key_slots_follow_redis_cluster_hash_tags() -> None:
    # Values from Redis's cluster specification and CLUSTER KEYSLOT.
    assert names.key_slot("123456789") == 0x31C3
    assert names.key_slot("{user1000}.following") == names.key_slot("{user1000}.followers")
    assert names.key_slot("foo{bar}{zap}") == names.key_slot("bar")  # the first tag counts
    assert names.key_slot("foo{}{bar}") != names.key_slot("bar")  # an empty tag: the whole name
    assert names.key_slot("foo{{bar}}zap") == names.key_slot("{bar")


def test_one_server_keeps_the_plain_names() -> None:
    layout = names.SINGLE_SERVER
    assert not layout.cluster and len(layout.groups) == 1
    group = layout.group_of("anything")
    assert group.name(names.EXPIRY_DUE) == "expiry:due"
    assert group.dedup("gen-key:1") == "dedup:gen-key:1"
    assert layout.test_current_copies == ["test:current"]
    assert layout.unlink(["a", "b"]) == [("UNLINK", "a", "b")]
    assert names.METRICS_GENERATED in layout.per_test_keys()


def test_a_cluster_splits_the_state_into_slot_groups_of_one_slot_each() -> None:
    layout = names.cluster_layout()
    assert layout.cluster and len(layout.groups) == names.CLUSTER_GROUPS
    width = names.HASH_SLOTS // names.CLUSTER_GROUPS
    for group in layout.groups:
        # Every name of a group hashes to the group's own slot, in the group's slot range.
        slot = names.key_slot(group.name(names.EXPIRY_DUE))
        assert slot // width == group.index
        for base in (names.EXPIRY_LEASES, names.TEST_CURRENT, names.TEST_CONSUMED):
            assert names.key_slot(group.name(base)) == slot
        assert names.key_slot(group.dedup("user:{odd}|key")) == slot
        assert names.is_internal(group.dedup("k")) and names.is_internal(group.name("expiry:due"))
    keys = [f"session:{i}" for i in range(2000)]
    for key in keys:
        assert layout.group_of(key).index == names.key_slot(key) // width
    assert sum(len(part) for part in layout.by_group(keys).values()) == len(keys)
    assert len(layout.test_current_copies) == 1 + names.CLUSTER_GROUPS
    assert all(len(command) == 2 for command in layout.unlink(["a", "b"]))


def test_cluster_claim_and_message_ids_name_the_group() -> None:
    """Each slot group counts its own claim ids: what handlers and JetStream see must not
    repeat across groups."""
    first, second = names.cluster_layout().groups[3:5]
    assert names.claim_identity("7", first) != names.claim_identity("7", second)
    assert names.msg_id("7", "", first) == f"claim-{first.tag}7"
    assert names.claim_identity("7", names.SINGLE_SERVER.groups[0]) == "7"
    assert names.msg_id("7", "", names.SINGLE_SERVER.groups[0]) == "claim-7"
