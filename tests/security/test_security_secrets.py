"""Hostname checks and secrets that must never surface, whatever the outcome."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.broker import Broker
from xiaodian.mqtt import describe_tls_error
from xiaodian.pki import DevPki
from xiaodian.wire.pickup import PickupCodec


def test_a_broker_certificate_for_another_name_is_refused_and_explained(
    broker: Broker, pki: DevPki
) -> None:
    own = pki.client("store-001")
    ctx = ssl.create_default_context(cafile=str(own.ca))
    ctx.load_cert_chain(str(own.cert), str(own.key))
    with (
        socket.create_connection((broker.host, broker.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError) as info,
    ):
        # The broker's certificate names localhost and 127.0.0.1, not this.
        ctx.wrap_socket(raw, server_hostname="broker.elsewhere.example")
    assert "does not match the host name" in describe_tls_error(info.value)


@pytest.mark.parametrize("valid", [True, False])
def test_the_pickup_key_never_appears_in_output_or_logs(tmp_path: Path, valid: bool) -> None:
    key = bytes(range(32))
    key_file = tmp_path / "pickup.key"
    key_file.write_text(key.hex())
    key_file.chmod(0o600)
    codec = PickupCodec("store-001", key)
    code = codec.issue(4711, expires_at=2_000_000_000)
    if not valid:
        code = code[:-3] + ("AAA" if not code.endswith("AAA") else "BBB")
    proc = subprocess.run(
        [sys.executable, "-m", "xiaodian", "-v", "scan", "parse", f"]Q1{code}",
         "--pickup-key-file", str(key_file), "--store", "store-001", "--now", "1900000000"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == (0 if valid else 1), proc.stderr
    everything = proc.stdout + proc.stderr
    assert key.hex() not in everything and key.hex().upper() not in everything
    assert str(key_file) not in proc.stdout  # where the key lives is not echoed either
