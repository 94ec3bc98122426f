import pytest

from shared.config import ConfigError, load_consumer, load_generator, redact


def test_defaults() -> None:
    generator = load_generator({})
    assert generator.common.redis_url == "redis://localhost:6379/0"
    assert generator.common.nats_url == "nats://localhost:4222"
    assert generator.port == 8080
    assert generator.api_token is None
    consumer = load_consumer({"CONSUMER_ID": "c-1"})
    assert consumer.consumer_id == "c-1"
    assert consumer.health_port == 8081


def test_consumer_id_defaults_to_the_host_name_and_process_id() -> None:
    import os
    import socket
    import subprocess
    import sys

    assert load_consumer({}).consumer_id == f"{socket.gethostname()}-{os.getpid()}"
    # Two consumers on one host never share a counter.
    program = "from shared.config import load_consumer; print(load_consumer({}).consumer_id)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    ids = {
        subprocess.run(
            [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(ids) == 2, ids


def test_the_generator_listens_on_localhost_unless_host_says_otherwise() -> None:
    assert load_generator({}).host == "127.0.0.1"
    assert load_generator({"HOST": "0.0.0.0"}).host == "0.0.0.0"
    assert load_generator({"HOST": "::"}).host == "::"
    assert load_generator({"HOST": "generator.internal"}).host == "generator.internal"


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost:6379",
        "redis://localhost:6379/",
        "redis://localhost:6379/15",
        "rediss://user:pw@cache.example.com:6380/2",
        "redis://[::1]:6379/0",
        "redis://localhost:6379?db=3",
        "redis+cluster://redis-cluster:6379",
        "rediss+cluster://user:pw@redis-cluster:6380/0",
    ],
)
def test_good_redis_urls(url: str) -> None:
    assert load_generator({"REDIS_URL": url}).common.redis_url == url


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"REDIS_URL": "http://localhost"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://host:99999"}, "REDIS_URL"),
        ({"NATS_URL": "localhost:4222"}, "NATS_URL"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"NATS_CREDS": "/nonexistent/creds"}, "NATS_CREDS"),
        ({"REDIS_URL": "redis://h:6379/notanumber"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://h:6379?db=x"}, "REDIS_URL"),
        ({"REDIS_URL": "redis://[::1/0"}, "REDIS_URL"),
        ({"NATS_URL": "nats://[::1:4222"}, "NATS_URL"),
        ({"REDIS_URL": "redis://bad host:6379/0"}, "REDIS_URL"),
        ({"REDIS_URL": "redis+cluster://redis-cluster:6379/2"}, "REDIS_URL"),
        ({"REDIS_URL": "redis+sentinel://h:26379"}, "REDIS_URL"),
        ({"HOST": "999.1.1.1"}, "HOST"),
        ({"HOST": "not a host"}, "HOST"),
        ({"HOST": "-leading-hyphen"}, "HOST"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_generator(env)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"HEALTH_HOST": "not a host"}, "HEALTH_HOST"),
        ({"HEALTH_HOST": "999.1.1.1"}, "HEALTH_HOST"),
        ({"REDIS_URL": "redis://h:6379/notanumber"}, "REDIS_URL"),
    ],
)
def test_bad_consumer_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_consumer(env)


def test_a_malformed_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigError) as error:
        load_generator({"REDIS_URL": "redis://user:s3cret@[::1/0"})
    assert "s3cret" not in str(error.value) and "REDIS_URL" in str(error.value)


@pytest.mark.parametrize("value", ["has space", "a/b", "x" * 129])
def test_bad_consumer_id(value: str) -> None:
    with pytest.raises(ConfigError, match="CONSUMER_ID"):
        load_consumer({"CONSUMER_ID": value})


def test_passwords_are_redacted() -> None:
    assert redact("rediss://user:s3cret@host:6380/0") == "rediss://user:***@host:6380/0"
    assert redact("redis://host:6379") == "redis://host:6379"
    with pytest.raises(ConfigError) as error:
        load_generator({"REDIS_URL": "redis://user:s3cret@host:notaport"})
    assert "s3cret" not in str(error.value)


def test_several_nats_servers_are_a_list() -> None:
    common = load_generator({"NATS_URL": " nats://a:4222, tls://u:pw@b:4222 ,nats://c:4222"}).common
    assert common.nats_servers == ["nats://a:4222", "tls://u:pw@b:4222", "nats://c:4222"]
    assert redact(common.nats_url) == "nats://a:4222,tls://u:***@b:4222,nats://c:4222"


@pytest.mark.parametrize(
    "value", ["nats://a:4222,b:4222", "nats://a:4222,http://b", "nats://a:4222,nats://b:x", ","]
)
def test_every_nats_server_is_checked(value: str) -> None:
    with pytest.raises(ConfigError, match="NATS_URL"):
        load_generator({"NATS_URL": value})


def test_a_bad_server_in_a_list_does_not_show_a_password() -> None:
    with pytest.raises(ConfigError) as error:
        load_generator({"NATS_URL": "nats://a:4222,nats://u:s3cret@b:port"})
    assert "s3cret" not in str(error.value)


def test_stream_settings() -> None:
    default = load_consumer({"CONSUMER_ID": "c"}).stream
    assert (default.replicas, default.storage) == (1, "memory")
    ha = load_consumer({"STREAM_REPLICAS": "3", "STREAM_STORAGE": "File"}).stream
    assert (ha.replicas, ha.storage) == (3, "file")
    for env in ({"STREAM_REPLICAS": "0"}, {"STREAM_REPLICAS": "6"}, {"STREAM_STORAGE": "disk"}):
        with pytest.raises(ConfigError, match=next(iter(env))):
            load_consumer(env)


def test_nats_ca_file_must_exist() -> None:
    with pytest.raises(ConfigError, match="NATS_CA_FILE"):
        load_generator({"NATS_CA_FILE": "/nonexistent/ca.pem"})


def test_a_missing_redis_ca_file_is_named() -> None:
    with pytest.raises(ConfigError, match=r"ssl_ca_certs='/nonexistent/ca\.pem'"):
        load_generator({"REDIS_URL": "rediss://host:6380/0?ssl_ca_certs=/nonexistent/ca.pem"})


def test_the_pipeline_settings_of_a_consumer() -> None:
    config = load_consumer(
        {
            "KEY_PATTERNS": " session:* , lease:[a-c]:* ",
            "HANDLER": "myapp.expiry:on_timeout",
            "HANDLER_CONCURRENCY": "8",
            "DEDUP_WINDOW_MS": "60000",
            "EXPIRY_LISTENERS": "0",
            "FLEET": "sessions",
        }
    )
    assert config.key_patterns == ("session:*", "lease:[a-c]:*")
    assert config.handler == "myapp.expiry:on_timeout"  # imported when the consumer starts
    assert (config.handler_concurrency, config.dedup_window_ms) == (8, 60000)
    assert (config.expiry_listeners, config.fleet) == (0, "sessions")
    defaults = load_consumer({})
    assert defaults.key_patterns == ("gen-key:*",)
    assert (defaults.expiry_listeners, defaults.dedup_window_ms) == (2, 5000)
