"""An artefact named by a signed command, fetched by the store over HTTPS from the cloud's
artefact server (edge/artefact_fetch.py, cloud_gateway/web/artefact_server.py): real TLS
with the project's CA both ways, the store's client certificate, the hash checked, a cut
download resumed, plaintext and strangers refused."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cloud_gateway.rollouts import artefact_path
from cloud_gateway.web.artefact_server import ArtefactServer, server_context
from edge.artefact_fetch import FetchError, fetch
from xiaodian.mqtt import TlsSettings
from xiaodian.pki import DevPki, dev_pki

STORE = "store-001"


@pytest.fixture
def served(pki: DevPki, tmp_path: Path) -> tuple[ArtefactServer, bytes, str]:
    blob = os.urandom(100_000)
    sha = hashlib.sha256(blob).hexdigest()
    (tmp_path / "served").mkdir()
    artefact_path(tmp_path / "served", sha).write_bytes(blob)
    ctx = server_context(pki.ca, pki.server_cert, pki.server_key)
    return ArtefactServer(tmp_path / "served", ctx), blob, sha


def test_a_store_fetches_verifies_and_keeps_the_artefact(
    pki: DevPki, tmp_path: Path, served: tuple[ArtefactServer, bytes, str]
) -> None:
    server, blob, sha = served
    seen: list[int] = []
    with server:
        got = fetch(server.url(sha), sha, len(blob), pki.client(STORE), tmp_path / "cache",
                    progress=lambda done, total: seen.append(done))
        assert got.read_bytes() == blob and got.name == f"{sha}.bin"
        assert seen[-1] == len(blob) and len(seen) > 1 and seen == sorted(seen)
        # Cached: the second fetch sends no request.
        before = len(server.fetches)
        assert fetch(server.url(sha), sha, len(blob), pki.client(STORE),
                     tmp_path / "cache") == got
        assert len(server.fetches) == before
    assert list(server.fetches) == [(STORE, sha, 200)]


def test_a_cut_download_resumes_from_what_it_holds(
    pki: DevPki, tmp_path: Path, served: tuple[ArtefactServer, bytes, str]
) -> None:
    server, blob, sha = served
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{sha}.part").write_bytes(blob[:40_000])  # what a cut left
    with server:
        got = fetch(server.url(sha), sha, len(blob), pki.client(STORE), cache)
    assert got.read_bytes() == blob
    assert list(server.fetches) == [(STORE, sha, 206)]


def test_wrong_bytes_plaintext_and_strangers_are_refused(
    pki: DevPki, tmp_path: Path, served: tuple[ArtefactServer, bytes, str]
) -> None:
    server, blob, sha = served
    cache = tmp_path / "cache"
    with server:
        other = hashlib.sha256(b"another image").hexdigest()
        artefact_path(server.directory, other).write_bytes(blob)  # served under a lie
        with pytest.raises(FetchError) as caught:
            fetch(server.url(other), other, len(blob), pki.client(STORE), cache)
        assert caught.value.reason == "bad_hash"
        assert not list(cache.glob(f"{other}*"))  # nothing kept
        with pytest.raises(FetchError) as caught:
            fetch(server.url(sha), sha, len(blob) - 1, pki.client(STORE), cache)
        assert caught.value.reason == "bad_size"
        with pytest.raises(FetchError) as caught:
            fetch(server.url(sha).replace("https:", "http:"), sha, len(blob),
                  pki.client(STORE), cache)
        assert caught.value.reason == "insecure_url"
        missing = hashlib.sha256(b"never uploaded").hexdigest()
        with pytest.raises(FetchError, match="HTTP 404"):
            fetch(server.url(missing), missing, 10, pki.client(STORE), cache)
        # A server whose certificate another CA signed: the store refuses it.
        stranger = dev_pki(tmp_path / "other-pki", [STORE])
        with pytest.raises(FetchError) as caught:
            fetch(server.url(sha), sha, len(blob), stranger.client(STORE), cache)
        assert caught.value.reason in ("tls_failed", "download_failed")
        assert "certificate verify failed" in caught.value.detail
        # A client whose certificate another CA signed: the server refuses it.
        foreign = TlsSettings(ca=pki.ca, cert=stranger.client(STORE).cert,
                              key=stranger.client(STORE).key)
        with pytest.raises(FetchError):
            fetch(server.url(sha), sha, len(blob), foreign, cache)
    assert not (cache / f"{sha}.bin").exists()
