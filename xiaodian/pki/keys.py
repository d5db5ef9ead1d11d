"""Keys kept apart from the CA: the command-signing pair and the per-store pickup-code keys.

The command-signing key (`make_command_key`) is an Ed25519 pair kept apart from the CA: a
stolen TLS CA lets an attacker join the broker, not command a store.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from xiaodian.wire.commands import key_id_for

from .files import key_pem, private_dir, write_file
from .names import PkiError, check_name

COMMAND_KEY_NAME = "command-signing.key"
COMMAND_PUB_NAME = "command-signing.pub"
FIRMWARE_KEY_NAME = "firmware-signing.key"
FIRMWARE_PUB_NAME = "firmware-signing.pub"
AGENT_KEY_NAME = "agent-signing.key"
AGENT_PUB_NAME = "agent-signing.pub"
PICKUP_DIR = "pickup"
PICKUP_KEY_BYTES = 32  # HMAC-SHA256 key, 256 bits


def make_command_key(directory: Path) -> tuple[Path, Path, str]:
    """A new Ed25519 command-signing pair: (private 0600, public, key id).

    Refuses to overwrite: stores pin the public key, and losing the private key would
    silently make every command unverifiable.
    """
    return _make_ed25519(directory / COMMAND_KEY_NAME, directory / COMMAND_PUB_NAME)


def make_firmware_key(directory: Path) -> tuple[Path, Path, str]:
    """A new Ed25519 firmware-signing pair, apart from the command key: whoever may command
    a store may not thereby put code on its fridges (docs/firmware_update.md)."""
    return _make_ed25519(directory / FIRMWARE_KEY_NAME, directory / FIRMWARE_PUB_NAME)


def make_agent_key(directory: Path) -> tuple[Path, Path, str]:
    """A new Ed25519 pair that signs the terminal's own software (xiaodian/agent_release.py),
    apart from the command and firmware keys: neither a command signer nor a fridge image
    signer may thereby run code on the terminal."""
    return _make_ed25519(directory / AGENT_KEY_NAME, directory / AGENT_PUB_NAME)


def _make_ed25519(priv_path: Path, pub_path: Path) -> tuple[Path, Path, str]:
    directory = priv_path.parent
    for p in (priv_path, pub_path):
        if p.exists():
            raise FileExistsError(f"key already exists: {p}")
    private_dir(directory)
    key = ed25519.Ed25519PrivateKey.generate()
    write_file(priv_path, key_pem(key), 0o600)
    pub_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_file(pub_path, pub_pem, 0o644)
    return priv_path, pub_path, key_id_for(key.public_key())


def load_command_private_key(path: Path) -> ed25519.Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise PkiError(f"{path}: not an Ed25519 private key")
    return key


def load_command_public_key(path: Path) -> ed25519.Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise PkiError(f"{path}: not an Ed25519 public key")
    return key


def pickup_key_path(directory: Path, store: str) -> Path:
    """Where `make_pickup_key` puts a store's key: <dir>/pickup/<store>.key."""
    return directory / PICKUP_DIR / f"{check_name(store)}.key"


def make_pickup_key(directory: Path, store: str) -> Path:
    """A new per-store pickup-code key (256 random bits, hex, one line), mode 0600.

    The cloud issues codes with it and the store's terminal verifies them offline
    (xiaodian/wire/pickup.py). Refuses to overwrite: codes already handed to customers would
    stop verifying. Rotation is a new key id with a new file, not a replaced key.
    """
    path = pickup_key_path(directory, store)
    if path.exists():
        raise FileExistsError(f"pickup key already exists: {path}")
    private_dir(path.parent)
    write_file(path, os.urandom(PICKUP_KEY_BYTES).hex().encode() + b"\n", 0o600)
    return path


def load_pickup_key(path: Path) -> bytes:
    """The key in a pickup key file (hex); PkiError naming the file, never its content."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise PkiError(f"{path}: mode {mode:04o} lets group/others read it;"
                       f" run: chmod 600 {path}")
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise PkiError(f"{path}: not a hex pickup key") from None
    if len(key) < 16:
        raise PkiError(f"{path}: pickup key shorter than 128 bits")
    return key
