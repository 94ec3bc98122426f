from shared.latency import bucket_of, bucket_upper_ms, percentiles


def test_buckets_hold_their_values() -> None:
    for delay in (0, 0.5, 1, 1.5, 7, 100, 999, 12345, 10**7):
        bucket = bucket_of(delay)
        assert delay <= bucket_upper_ms(bucket)
        if bucket > 0:
            assert delay >= bucket_upper_ms(bucket - 1)


def test_buckets_are_within_ten_percent() -> None:
    for bucket in range(1, 200):
        assert bucket_upper_ms(bucket) / bucket_upper_ms(bucket - 1) < 1.1 or bucket == 1


def test_percentiles() -> None:
    assert percentiles({}) is None
    counts = {bucket_of(10): 50, bucket_of(100): 45, bucket_of(1000): 5}
    result = percentiles(counts)
    assert result is not None
    assert 10 <= result["p50"] < 11
    assert 100 <= result["p95"] < 110
    assert 1000 <= result["p99"] < 1100
