"""Reading a ``REDIS_URL`` for the trio-native subscriber (TLS and its CA)."""

from shared.redis.pubsub import RedisAddress


def test_rediss_takes_its_ca_from_ssl_ca_certs_as_redis_py_does() -> None:
    address = RedisAddress.from_url("rediss://:pw@redis:6380/2?ssl_ca_certs=/etc/redis-tls/ca.crt")
    assert (address.host, address.port, address.db) == ("redis", 6380, 2)
    assert address.tls and address.ca_file == "/etc/redis-tls/ca.crt"
    assert address.password == "pw"


def test_plain_redis_has_no_ca() -> None:
    address = RedisAddress.from_url("redis://localhost:6379/0")
    assert not address.tls and address.ca_file is None
