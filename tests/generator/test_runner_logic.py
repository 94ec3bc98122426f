from generator.key_writer import keys_due, write_stages
from generator.runner import new_test_id
from generator.status import Snapshot, status_document, verdict
from shared import names


def test_write_commands_register_each_key_with_its_deadline_in_one_transaction() -> None:
    stages = write_stages(
        names.SINGLE_SERVER, "t-1", ["gen-key:10", "gen-key:11", "gen-key:12"], 13, ttl_ms=100
    )
    assert stages == [
        [
            ("MULTI",),
            ("HGET", "test:current", "id"),
            (
                "FCALL",
                "expiry_register_many",
                4,
                "gen-key:10",
                "gen-key:11",
                "gen-key:12",
                "expiry:due",
                100,
                "t-1",
                "t-1",
                "t-1",
            ),
            ("SET", "metrics:generated", 13),
            ("EXEC",),
        ]
    ]


def test_keys_due_paces_by_the_delay_and_catches_up() -> None:
    assert keys_due(0.0, delay_ms=0, written=0, total=50) == 50
    assert keys_due(0.010, delay_ms=1, written=0, total=1000) == 10
    assert keys_due(0.010, delay_ms=1, written=8, total=1000) == 2
    assert keys_due(5.0, delay_ms=1, written=990, total=1000) == 10
    assert keys_due(0.0005, delay_ms=1, written=0, total=1000) == 0


def test_test_ids_are_unique() -> None:
    assert len({new_test_id() for _ in range(100)}) == 100


def snapshot(**overrides: object) -> Snapshot:
    base: dict[str, object] = dict(
        test={
            "id": "t",
            "state": "finished",
            "num_keys": "10",
            "key_delay": "1",
            "key_ttl": "100",
            "dedup_window": "5000",
            "started_at": "100.0",
            "finished_at": "102.5",
        },
        generated=10,
        consumed=10,
        unique=10,
        pending=0,
        inflight=0,
        duplicates=0,
        dead_letters=0,
        recovered=0,
    )
    base.update(overrides)
    return Snapshot(**base)  # type: ignore[arg-type]


def test_verdict_exactly_once() -> None:
    assert verdict(snapshot())["exactly_once"] is True


def test_verdict_counts_missing_and_doubled_keys() -> None:
    result = verdict(snapshot(consumed=9, unique=8))
    assert (result["missing"], result["duplicates"], result["exactly_once"]) == (2, 1, False)


def test_status_document() -> None:
    doc = status_document(snapshot(unique=5, consumed=5), (10.0, 5.0), now=200.0)
    assert doc["progress"] == 50.0
    assert doc["in_flight"] == 5
    assert doc["elapsed_s"] == 2.5
    # An ended test reports its average rates, not the last second's.
    assert (doc["generation_rate"], doc["consumption_rate"]) == (4.0, 2.0)
    assert doc["is_running"] is False
    assert doc["config"] == {"num_keys": 10, "key_delay": 1, "key_ttl": 100, "dedup_window": 5000}
    idle = status_document(snapshot(test={}, generated=0, consumed=0, unique=0), (0, 0), 1.0)
    assert (idle["state"], idle["config"], idle["progress"]) == ("idle", None, 0.0)
