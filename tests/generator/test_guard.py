import pytest

from generator.guard import content_refusal, host_allowed, known_hosts, origin_refusal

HOSTS = known_hosts(("https://ui.example.com",), "127.0.0.1")


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:8080", "localhost:30080", "LOCALHOST", "app.localhost:1", "[::1]:8080", "10.1.2.3"],
)
def test_ip_addresses_localhost_and_listed_hosts_are_known(host: str) -> None:
    assert host_allowed(host, HOSTS)
    assert host_allowed("ui.example.com", HOSTS)


@pytest.mark.parametrize("host", [None, "", "evil.example:8080", "127.0.0.1.evil.example", "[::1"])
def test_other_host_names_are_not(host: str | None) -> None:
    assert not host_allowed(host, HOSTS)


@pytest.mark.parametrize(
    ("origin", "site", "refused"),
    [
        (None, None, False),  # curl, scripts: not a browser
        ("http://127.0.0.1:8080", "same-origin", False),
        ("https://ui.example.com", "cross-site", False),  # listed
        ("http://127.0.0.1:9999", None, True),
        ("http://evil.example", None, True),
        ("null", None, True),
        (None, "cross-site", True),
        (None, "same-site", True),
        (None, "none", False),  # typed into the address bar
    ],
)
def test_only_the_own_or_a_listed_origin_may_control(
    origin: str | None, site: str | None, refused: bool
) -> None:
    refusal = origin_refusal(origin, site, "127.0.0.1:8080", ("https://ui.example.com",), HOSTS)
    assert (refusal is not None) == refused
    if refusal:
        assert refusal.status == 403 and "ALLOWED_ORIGINS" in refusal.message


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/json", b"{}", None),
        ("Application/JSON; charset=utf-8", b"{}", None),
        (None, b"", None),
        (None, b"  ", None),
        (None, b"{}", 415),
        ("text/plain", b"{}", 415),
        ("text/plain", b"", 415),
        ("application/x-www-form-urlencoded", b"a=1", 415),
    ],
)
def test_bodies_must_be_json(content_type: str | None, body: bytes, status: int | None) -> None:
    refusal = content_refusal(content_type, body)
    assert (refusal.status if refusal else None) == status
