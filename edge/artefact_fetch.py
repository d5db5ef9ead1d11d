"""Fetching an artefact the cloud names in a signed command: HTTPS only, verified, resumable.

Any kind of artefact (a fridge firmware image now; the terminal's own update, #19, later):
the command gives the URL, the size and the SHA-256; the bytes come over TLS checked
against the project's CA (pinned, host name checked), with the store's own client
certificate (the one it uses for MQTT; its CN is the store id). An `http://` URL is
refused: there is no plaintext fallback. The download goes to `<sha256>.part` in the cache
directory, hashed as it arrives; a cut one resumes from its length (`Range`), and only a
file whose size and SHA-256 are the command's becomes `<sha256>.bin`. The bytes are then
judged as any image (the signature, by the caller): the channel is not what is trusted.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from xiaodian.mqtt import TlsSettings

BLOCK = 16 * 1024
TIMEOUT_S = 30.0
_HEX64 = re.compile(r"[0-9a-f]{64}")


class FetchError(Exception):
    """The artefact could not be had; `reason` is a result code for the cloud."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def client_context(tls: TlsSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def fetch(url: str, sha256_hex: str, size: int, tls: TlsSettings, cache: Path, *,
          progress: Callable[[int, int], None] = lambda done, total: None,
          timeout_s: float = TIMEOUT_S) -> Path:
    """The verified artefact's path in `cache` (already there: no download); FetchError."""
    if not _HEX64.fullmatch(sha256_hex) or size <= 0:
        raise FetchError("bad_request", "the command's sha256 or size is malformed")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise FetchError("insecure_url", f"only https:// is fetched, not {url[:80]!r}")
    cache.mkdir(parents=True, exist_ok=True)
    done_path = cache / f"{sha256_hex}.bin"
    if done_path.is_file() and _sha256_of(done_path) == sha256_hex:
        progress(size, size)
        return done_path
    part = cache / f"{sha256_hex}.part"
    have = part.stat().st_size if part.is_file() else 0
    if have > size:
        part.unlink()
        have = 0
    digest = hashlib.sha256()
    if have:
        with part.open("rb") as f:
            while block := f.read(BLOCK):
                digest.update(block)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443,
                                       context=client_context(tls), timeout=timeout_s)
    try:
        conn.request("GET", parts.path or "/",
                     headers={"Range": f"bytes={have}-"} if have else {})
        resp = conn.getresponse()
        if resp.status == 200 and have:
            have, digest = 0, hashlib.sha256()  # the server ignored the range: from 0
        elif resp.status not in (200, 206):
            raise FetchError("download_failed", f"HTTP {resp.status} {resp.reason}")
        with part.open("ab" if have else "wb") as out:
            while have < size and (block := resp.read(min(BLOCK, size - have + 1))):
                if have + len(block) > size:
                    raise FetchError("bad_size", f"more than the {size} bytes named")
                out.write(block)
                digest.update(block)
                have += len(block)
                progress(have, size)
            out.flush()
            os.fsync(out.fileno())
        if resp.read(1):
            part.unlink()
            raise FetchError("bad_size", f"more than the {size} bytes named")
    except ssl.SSLError as exc:
        raise FetchError("tls_failed", str(exc)) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError("download_failed", str(exc) or type(exc).__name__) from exc
    finally:
        conn.close()
    if have < size:
        raise FetchError("download_failed", f"cut at {have} of {size} bytes (resumes)")
    if digest.hexdigest() != sha256_hex:
        part.unlink()
        raise FetchError("bad_hash", "the bytes' SHA-256 differs from the command's")
    part.rename(done_path)
    return done_path


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()
