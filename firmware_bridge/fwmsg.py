"""Firmware-update messages of the serial protocol (docs/protocol.md §4.10).

Payloads only: framing, CRC and sequence numbers are codec.py's, unchanged. Same subset
of Python as codec.py (only `struct`; MicroPython discards annotations), and a flat file
beside it on the board. Kept apart from codec.py so a controller that never updates, and
the tools that only read the line, need not load it.

    FW_OFFER  0x40 host -> device  image sha256, size, version, hardware id
    FW_CHUNK  0x41 host -> device  offset, image tag, bytes
    FW_STATUS 0x42 device -> host  what the device holds: state, image sha256, next offset
    FW_COMMIT 0x43 host -> device  install / confirm / abort, naming the image
    FW_RESULT 0x44 device -> host  the outcome of an offer or a commit, with a reason code
"""

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

FW_OFFER = 0x40
FW_CHUNK = 0x41
FW_STATUS = 0x42
FW_COMMIT = 0x43
FW_RESULT = 0x44
TYPE_NAMES = {
    FW_OFFER: "fw_offer",
    FW_CHUNK: "fw_chunk",
    FW_STATUS: "fw_status",
    FW_COMMIT: "fw_commit",
    FW_RESULT: "fw_result",
}

HASH_SIZE = 32
CHUNK_DATA = 240  # bytes of image per FW_CHUNK: header 8 + 240 = 248 <= 255
MAX_CHUNK_DATA = 255 - 8
MAX_HARDWARE = 255 - 40

# FW_STATUS states
STATE_IDLE = 0  # nothing staged
STATE_RECEIVING = 1  # an image is being received: next_offset < size
STATE_COMPLETE = 2  # every byte is there, not yet installed
STATE_TRIAL = 3  # running a new image on trial, not yet healthy
STATE_HEALTHY = 4  # the trial image passed its self-check: waiting for the host's confirm
STATE_NAMES = ("idle", "receiving", "complete", "trial", "healthy")

# FW_COMMIT actions
ACTION_INSTALL = 0  # verify the staged image, switch slots, restart on trial
ACTION_CONFIRM = 1  # the running trial image is good: keep it
ACTION_ABORT = 2  # drop the staged image
ACTION_NAMES = ("install", "confirm", "abort")

# FW_RESULT codes
RESULT_ACCEPTED = 0  # offer taken (the status that follows says from where)
RESULT_INSTALLED = 1  # switched: the device restarts on the new image, on trial
RESULT_CONFIRMED = 2
RESULT_ROLLED_BACK = 3  # the trial image crashed, hung or was never confirmed
RESULT_BAD_HASH = 4
RESULT_WRONG_HARDWARE = 5
RESULT_DOWNGRADE = 6  # not newer than what runs
RESULT_TOO_LARGE = 7
RESULT_BAD_MANIFEST = 8
RESULT_UNKNOWN_IMAGE = 9  # names an image the device does not hold
RESULT_INCOMPLETE = 10  # install before every byte arrived
RESULT_IO_ERROR = 11
RESULT_BUSY = 12  # another image is on trial
RESULT_ABORTED = 13
RESULT_BAD_SIGNATURE = 14  # the terminal's refusal (fwimage.judge); a device never sends it
RESULT_AGENT_TOO_OLD = 15  # the terminal's too: the manifest's min_agent is above its own
# the device's own signature check (fwsig.py) refused the image before the switch: no XSG2
# trailer, a key not in its fwkeys.json, or a signature that does not match
RESULT_DEVICE_BAD_SIGNATURE = 16
RESULT_NAMES = (
    "accepted", "installed", "confirmed", "rolled_back", "bad_hash", "wrong_hardware",
    "downgrade", "too_large", "bad_manifest", "unknown_image", "incomplete", "io_error",
    "busy", "aborted", "bad_signature", "agent_too_old", "device_bad_signature",
)

_OFFER = "<32sIBBBB"  # sha256, size, version major/minor/patch, hardware id length: 40
_CHUNK = "<II"  # offset, tag (first 4 bytes of the sha256, little-endian): 8
_STATUS = "<QB32sII"  # dev_ms, state, sha256, next_offset, size: 49
_COMMIT = "<32sB"  # sha256, action: 33
_RESULT = "<Q32sB"  # dev_ms, sha256, code: 41


def _name(names: "tuple[str, ...]", code: int) -> str:
    return names[code] if 0 <= code < len(names) else "unknown_" + str(code)


def _code(names: "tuple[str, ...]", value: "int | str") -> int:
    if isinstance(value, str):
        for i in range(len(names)):
            if names[i] == value:
                return i
        raise ValueError("unknown name: " + value)
    return value


def _hash(sha256: bytes) -> bytes:
    if len(sha256) != HASH_SIZE:
        raise ValueError("an image hash is 32 bytes")
    return bytes(sha256)


def tag_of(sha256: bytes) -> int:
    """The 4-byte tag a chunk carries, so a late chunk of another image is never written."""
    return int(struct.unpack_from("<I", sha256, 0)[0])


def pack_offer(sha256: bytes, size: int, version: "tuple[int, int, int]", hardware: str) -> bytes:
    hw = hardware.encode("utf-8")
    if len(hw) > MAX_HARDWARE:
        raise ValueError("hardware id too long")
    major, minor, patch = version
    return struct.pack(_OFFER, _hash(sha256), size, major, minor, patch, len(hw)) + hw


def pack_chunk(offset: int, sha256: bytes, data: bytes) -> bytes:
    if not 0 < len(data) <= MAX_CHUNK_DATA:
        raise ValueError("a chunk carries 1 to 247 bytes")
    return struct.pack(_CHUNK, offset, tag_of(sha256)) + bytes(data)


def pack_status(
    dev_ms: int, state: "int | str", sha256: bytes, next_offset: int, size: int
) -> bytes:
    code = _code(STATE_NAMES, state)
    return struct.pack(_STATUS, dev_ms, code, _hash(sha256), next_offset, size)


def pack_commit(sha256: bytes, action: "int | str") -> bytes:
    return struct.pack(_COMMIT, _hash(sha256), _code(ACTION_NAMES, action))


def pack_result(dev_ms: int, sha256: bytes, code: "int | str") -> bytes:
    return struct.pack(_RESULT, dev_ms, _hash(sha256), _code(RESULT_NAMES, code))


def decode(msg_type: int, payload: bytes) -> "dict[str, Any] | None":
    """Named fields, as codec.decode_message gives them; None if unknown or too short."""
    p = bytes(payload)
    if msg_type == FW_OFFER:
        if len(p) < 40:
            return None
        sha, size, major, minor, patch, hw_len = struct.unpack_from(_OFFER, p, 0)
        if len(p) < 40 + hw_len:
            return None
        try:
            hardware = p[40 : 40 + hw_len].decode("utf-8")
        except ValueError:
            return None
        return {"type": "fw_offer", "sha256": sha, "size": size,
                "version": [major, minor, patch], "hardware": hardware}
    if msg_type == FW_CHUNK:
        if len(p) < 9:  # an empty chunk is no chunk
            return None
        offset, tag = struct.unpack_from(_CHUNK, p, 0)
        return {"type": "fw_chunk", "offset": offset, "tag": tag, "data": p[8:]}
    if msg_type == FW_STATUS:
        if len(p) < 49:
            return None
        dev_ms, state, sha, nxt, size = struct.unpack_from(_STATUS, p, 0)
        return {"type": "fw_status", "dev_ms": dev_ms, "state": _name(STATE_NAMES, state),
                "sha256": sha, "next_offset": nxt, "size": size}
    if msg_type == FW_COMMIT:
        if len(p) < 33:
            return None
        sha, action = struct.unpack_from(_COMMIT, p, 0)
        return {"type": "fw_commit", "sha256": sha, "action": _name(ACTION_NAMES, action)}
    if msg_type == FW_RESULT:
        if len(p) < 41:
            return None
        dev_ms, sha, code = struct.unpack_from(_RESULT, p, 0)
        return {"type": "fw_result", "dev_ms": dev_ms, "sha256": sha,
                "result": _name(RESULT_NAMES, code)}
    return None
