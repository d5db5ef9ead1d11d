"""The one Host/Origin check both HTTP servers use (xiaodian.http_limits.same_origin)."""

from __future__ import annotations

import pytest

from xiaodian.http_limits import same_origin

KIOSK = {"127.0.0.1:8090", "localhost:8090", "[::1]:8090"}


@pytest.mark.parametrize("host", ["127.0.0.1:8090", "LOCALHOST:8090", "[::1]:8090"])
def test_the_terminal_answers_its_own_names_without_an_origin(host: str) -> None:
    assert same_origin(host, None, hosts=KIOSK, schemes=("http",))


@pytest.mark.parametrize("host", [None, "", "attacker.example:8090", "127.0.0.1:8091",
                                  "127.0.0.1"])
def test_the_terminal_refuses_other_hosts(host: str | None) -> None:
    # A rebound DNS name reaches the right socket with the wrong Host.
    assert not same_origin(host, None, hosts=KIOSK, schemes=("http",))


@pytest.mark.parametrize(("origin", "ok"), [
    ("http://127.0.0.1:8090", True),
    ("http://localhost:8090", False),  # another name than the Host: another origin
    ("https://127.0.0.1:8090", False),  # the terminal serves plain http only
    ("http://attacker.example", False),
    ("null", False),
    ("", False),
])
def test_the_terminal_checks_the_origin(origin: str, ok: bool) -> None:
    assert same_origin("127.0.0.1:8090", origin, hosts=KIOSK, schemes=("http",)) is ok


@pytest.mark.parametrize(("host", "origin", "ok"), [
    ("cloud.example", None, True),  # no Origin (old browser, or not a browser)
    ("cloud.example", "https://cloud.example", True),
    ("cloud.example:8443", "https://cloud.example:8443", True),
    ("Cloud.Example", "http://cloud.example", True),  # TLS may end at the proxy
    ("cloud.example", "https://evil.example", False),
    ("cloud.example", "https://cloud.example:444", False),
    ("cloud.example", "null", False),
    ("cloud.example", "ftp://cloud.example", False),
    (None, "null", False),
    (None, "https://cloud.example", False),
])
def test_the_cloud_accepts_any_host_but_only_its_own_origin(
        host: str | None, origin: str | None, ok: bool) -> None:
    assert same_origin(host, origin) is ok
