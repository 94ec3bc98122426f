import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator.validation import LIMITS, RequestError, TestConfig, parse_start_request


def test_missing_fields_take_the_defaults() -> None:
    assert parse_start_request(None) == TestConfig(1000, 1, 100, 5000)
    assert parse_start_request({}) == TestConfig(1000, 1, 100, 5000)
    assert parse_start_request({"num_keys": 5}) == TestConfig(5, 1, 100, 5000)


def test_whole_floats_are_integers() -> None:
    assert parse_start_request({"num_keys": 10.0}).num_keys == 10


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"num_keys": -1}, "num_keys"),
        ({"num_keys": 0}, "num_keys"),
        ({"num_keys": 10**12}, "num_keys"),
        ({"num_keys": "100"}, "num_keys"),
        ({"num_keys": True}, "num_keys"),
        ({"num_keys": None}, "num_keys"),
        ({"num_keys": 1.5}, "num_keys"),
        ({"num_keys": math.inf}, "num_keys"),
        ({"key_delay": -1}, "key_delay"),
        ({"key_delay": 60_001}, "key_delay"),
        ({"key_ttl": 0}, "key_ttl"),
        ({"key_ttl": [100]}, "key_ttl"),
        ({"dedup_window": 0}, "dedup_window"),
        ({"dedup_window": {"ms": 5}}, "dedup_window"),
        ({"num_key": 10}, "num_key"),
    ],
)
def test_errors_name_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(RequestError) as error:
        parse_start_request(body)
    assert error.value.field == field
    assert field in error.value.message


@pytest.mark.parametrize("body", [[], "x", 3, [{"num_keys": 1}]])
def test_the_body_must_be_an_object(body: object) -> None:
    with pytest.raises(RequestError, match="JSON object"):
        parse_start_request(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=10,
)


@given(st.dictionaries(st.sampled_from([*LIMITS, "other", "ключ"]), json_values, max_size=5))
def test_any_body_is_either_valid_or_a_named_error(body: dict[str, object]) -> None:
    try:
        config = parse_start_request(body)
    except RequestError as error:
        assert error.message
        json.dumps(error.as_dict())
    else:
        for field, (low, high, _) in LIMITS.items():
            assert low <= getattr(config, field) <= high
