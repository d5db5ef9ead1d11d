"""The firmware signature the device checks itself: the signed statement, its trailer, and
the device's trusted keys (docs/firmware_update.md, "Where the signature is checked").

Shared by the terminal (fwimage.py signs and judges with it) and the board (fwstage.py
checks with it before the slot switch), so both build the same bytes. Same subset of Python
as codec.py; a flat file beside it on the board.

    statement = "xiaodian-fw-v2" 0 | SHA-256 of the signed part (header, manifest, body)
                | version major, minor, patch (u8 each) | body size u32 LE
                | hardware length u8 | hardware (UTF-8)
    trailer   = "XSG2" | key id (8: SHA-256 of the raw public key, first 8) | Ed25519 (64)

The prefix keeps a signature over a statement from ever being one over anything else the
key signs; the hash binds the whole image, the manifest fields are there in the clear so
the device checks the very version, hardware and size it read from the manifest. Ed25519
over these 60-odd bytes is one SHA-512 block: affordable on the board, unlike a signature
over the whole image.

The trusted keys are in `fwkeys.json` at the root of the flash, beside the loader:
{"keys": [hex of a raw 32-byte Ed25519 public key, ...]}. It is written at manufacture
(`fwimage.write_device_keys`); an update never writes the root (images go into fw/a, fw/b)
and an image may not even name the file (fwstage.LOADER_FILES). No file, or no key in it:
the device installs nothing.
"""

import binascii
import hashlib
import json
import struct

DOMAIN = b"xiaodian-fw-v2\x00"
MAGIC = b"XSG2"
TRAILER_SIZE = 4 + 8 + 64
KEYS_FILE = "fwkeys.json"


def statement(signed_sha: bytes, version: "tuple[int, ...]", hardware: str, size: int) -> bytes:
    hw = hardware.encode()
    if len(signed_sha) != 32 or len(version) != 3 or len(hw) > 255:
        raise ValueError("statement: 32-byte hash, 3-part version, hardware <= 255 bytes")
    return (DOMAIN + signed_sha + struct.pack("<BBBIB", version[0], version[1], version[2],
                                              size, len(hw)) + hw)


def key_id(public: bytes) -> bytes:
    return hashlib.sha256(public).digest()[:8]


def keys_path(root: str) -> str:
    return root + "/" + KEYS_FILE if root else KEYS_FILE


def read_keys(root: str) -> "list[bytes]":
    """The public keys the device trusts; [] for a missing or unreadable file."""
    try:
        with open(keys_path(root)) as f:
            doc = json.load(f)
        out = [binascii.unhexlify(str(k)) for k in doc["keys"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [k for k in out if len(k) == 32]


def keys_json(publics: "list[bytes]") -> str:
    return json.dumps({"keys": [binascii.hexlify(k).decode() for k in publics]})
