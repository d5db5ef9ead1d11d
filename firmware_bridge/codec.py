"""Serial frame codec shared by the fridge firmware, the host and the simulator.

Pure and I/O-free, in the subset of Python that MicroPython runs: only `struct`
and `binascii`, no dataclasses, no f-strings, no `typing` at run time (MicroPython
discards annotations, so plain ones are safe; names that only mypy knows are quoted).
The byte layout is specified in docs/protocol.md; keep the two in step.

One piece on purpose, though long: the board's filesystem holds it as a single flat file
beside the firmware's main.py (tests/test_firmware_checks.py and tests/fw_unit check it
in that layout, hw_sim.firmware_host loads it so), and MicroPython has no packages there,
so splitting it would mean deploying and version-matching several files on every board.

    frame  = COBS(body) 0x00
    body   = version u8, type u8, flags u8, seq u16 LE, length u8, payload, crc32 u32 LE
"""

import binascii
import struct

# mypy treats a name TYPE_CHECKING as true; MicroPython never imports typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# --- protocol version -----------------------------------------------------------------------
PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
VERSION = (PROTOCOL_MAJOR << 4) | PROTOCOL_MINOR  # 0x10

# --- message types --------------------------------------------------------------------------
HELLO = 0x01
HEARTBEAT = 0x02
TEMP = 0x10
DOOR = 0x11
COMPRESSOR = 0x12
POWER = 0x13
DEFROST = 0x14
LANES = 0x15
LOCK = 0x16
GET_HELLO = 0x20
RECEIPT = 0x21
# Commands, host -> device, always with ACK_REQUESTED; retried with the same seq and
# executed once (docs/protocol.md §5).
SET_POINT = 0x30
DEFROST_NOW = 0x31
UNLOCK = 0x32
REBOOT = 0x33
TARE = 0x34
CALIBRATE = 0x35
COMMAND_TYPES = (SET_POINT, DEFROST_NOW, UNLOCK, REBOOT, TARE, CALIBRATE)
ACK = 0x7F

# Device records the host must store durably: the device keeps each in its log until a
# RECEIPT names it, and sends it again (flag RETRANSMISSION) until then.
LOGGED_TYPES = (TEMP, DOOR, COMPRESSOR, POWER, DEFROST, LANES, LOCK)
MAX_RECEIPT_SEQS = 125  # (255 - 5) // 2

TYPE_NAMES = {
    HELLO: "hello",
    HEARTBEAT: "heartbeat",
    TEMP: "temp",
    DOOR: "door",
    COMPRESSOR: "compressor",
    POWER: "power",
    DEFROST: "defrost",
    LANES: "lanes",
    LOCK: "lock",
    GET_HELLO: "get_hello",
    RECEIPT: "receipt",
    SET_POINT: "set_point",
    DEFROST_NOW: "defrost_now",
    UNLOCK: "unlock",
    REBOOT: "reboot",
    TARE: "tare",
    CALIBRATE: "calibrate",
    ACK: "ack",
}

# --- flags ----------------------------------------------------------------------------------
ACK_REQUESTED = 0x01
RETRANSMISSION = 0x02
REPLY = 0x04

FLAG_NAMES = (
    (ACK_REQUESTED, "ack_requested"),
    (RETRANSMISSION, "retransmission"),
    (REPLY, "reply"),
)

# --- probe status (index = code) ------------------------------------------------------------
STATUS_OK = 0
STATUS_CRC = 1
STATUS_MISSING = 2
STATUS_SUSPECT = 3  # the DS18B20's 85.0 °C power-on value
PROBE_STATUS_NAMES = ("ok", "crc", "missing", "suspect")

# --- compressor reasons (index = code) ------------------------------------------------------
COMPRESSOR_THERMOSTAT = 0
COMPRESSOR_MIN_OFF_TIME = 1
COMPRESSOR_DEFROST_START = 2
COMPRESSOR_DEFROST_END = 3
COMPRESSOR_COMMAND = 4
COMPRESSOR_POWER = 5
COMPRESSOR_FAULT = 6
COMPRESSOR_REASON_NAMES = (
    "thermostat",
    "min_off_time",
    "defrost_start",
    "defrost_end",
    "command",
    "power",
    "fault",
)

# --- defrost reasons (index = code) ---------------------------------------------------------
DEFROST_SCHEDULE = 0
DEFROST_COMMAND = 1
DEFROST_TEMPERATURE = 2  # ended: evaporator reached its termination temperature
DEFROST_TIMEOUT = 3  # ended: maximum duration reached
DEFROST_POWER = 4
DEFROST_FAULT = 5
DEFROST_REASON_NAMES = ("schedule", "command", "temperature", "timeout", "power", "fault")

# --- lock reasons (index = code) ------------------------------------------------------------
LOCK_BOOT = 0  # the state the controller starts in (locked)
LOCK_COMMAND = 1  # UNLOCK released it
LOCK_DOOR_CLOSED = 2  # re-locked: the door was opened and closed again
LOCK_TIMEOUT = 3  # re-locked: the UNLOCK's time ran out with the door shut
LOCK_REASON_NAMES = ("boot", "command", "door_closed", "timeout")

# --- reset causes (index = code), after machine.reset_cause() -------------------------------
RESET_UNKNOWN = 0
RESET_POWER_ON = 1
RESET_HARD = 2
RESET_WATCHDOG = 3
RESET_DEEP_SLEEP = 4
RESET_SOFT = 5
RESET_BROWNOUT = 6
RESET_CAUSE_NAMES = ("unknown", "power_on", "hard", "watchdog", "deep_sleep", "soft", "brownout")

# --- capability bits (HELLO) ----------------------------------------------------------------
CAP_DOOR = 0x0001
CAP_COMPRESSOR = 0x0002
CAP_DEFROST = 0x0004
CAP_POWER = 0x0008
CAP_LOCK = 0x0010
CAP_LOAD_CELLS = 0x0020
CAPABILITY_NAMES = (
    (CAP_DOOR, "door"),
    (CAP_COMPRESSOR, "compressor"),
    (CAP_DEFROST, "defrost"),
    (CAP_POWER, "power"),
    (CAP_LOCK, "lock"),
    (CAP_LOAD_CELLS, "load_cells"),
)

# --- ACK status (index = code) --------------------------------------------------------------
ACK_OK = 0
ACK_DUPLICATE = 1  # a retry of a command already executed: acknowledged, not run again
ACK_UNKNOWN_TYPE = 2
ACK_BAD_PAYLOAD = 3
ACK_BUSY = 4
ACK_FAILED = 5
ACK_STATUS_NAMES = ("ok", "duplicate", "unknown_type", "bad_payload", "busy", "failed")

# --- sizes ----------------------------------------------------------------------------------
HEADER_SIZE = 6
CRC_SIZE = 4
MAX_PAYLOAD = 255  # the length field is one byte
MIN_BODY = HEADER_SIZE + CRC_SIZE  # 10
MAX_BODY = MIN_BODY + MAX_PAYLOAD  # 265
# COBS adds one code byte per started run of 254 bytes: 265 bytes -> 2 code bytes.
MAX_ENCODED = MAX_BODY + (MAX_BODY + 253) // 254  # 267, without the delimiter
MAX_FRAME = MAX_ENCODED + 1  # 268, with the 0x00 delimiter
MAX_PROBES = (MAX_PAYLOAD - 9) // 4  # 61 probes fit in a TEMP payload
MAX_DEVICE_ID = MAX_PAYLOAD - 23  # 232 UTF-8 bytes fit in a HELLO payload
MAX_LANES = (MAX_PAYLOAD - 9) // 5  # 49 lanes fit in a LANES payload
LANE_STABLE = 0x01  # LANES: bit 0 of a lane's flags

_HEADER = "<BBBHB"
_EVENT = "<QBB"  # dev_ms, state u8, reason u8 (COMPRESSOR, DEFROST, LOCK)
_HELLO = "<QBBBBBBHBBIB"  # 23 bytes, the device id follows
_HEARTBEAT = "<QIHHH"  # 18 bytes
_TEMP_HEAD = "<QB"  # 9 bytes
_PROBE = "<BBh"  # 4 bytes
_DOOR = "<QBI"  # 13 bytes
_POWER = "<QBH"  # 11 bytes
_ACK = "<HB"  # 3 bytes
_LANES_HEAD = "<QB"  # 9 bytes, then count lane records
_LANE = "<iB"  # 5 bytes: grams i32, flags u8
_I32_MIN = -0x80000000
_I32_MAX = 0x7FFFFFFF


def _name(names: "tuple[str, ...]", code: int) -> str:
    if 0 <= code < len(names):
        return names[code]
    return "unknown_" + str(code)


def _code(names: "tuple[str, ...]", value: "int | str") -> int:
    """Accept a code or its name, so callers can write either."""
    if isinstance(value, str):
        for i in range(len(names)):
            if names[i] == value:
                return i
        raise ValueError("unknown name: " + value)
    return value


def crc32(data: bytes) -> int:
    return binascii.crc32(data) & 0xFFFFFFFF


# --- COBS -----------------------------------------------------------------------------------


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing; the result has no 0x00 and no delimiter.

    A run of 254 non-zero bytes gets code 0xFF; a new block is only opened after it when
    more data follows (so 254 non-zero bytes encode to 0xFF + the bytes, no trailing 0x01).
    """
    out = bytearray(b"\x00")
    code_at = 0
    code = 1
    n = len(data)
    for k in range(n):
        b = data[k]
        if b == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
        else:
            out.append(b)
            code += 1
            if code == 0xFF and k + 1 < n:
                out[code_at] = code
                code_at = len(out)
                out.append(0)
                code = 1
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> "bytes | None":
    """Inverse of cobs_encode (input without the delimiter); None when not valid COBS."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            return None
        chunk = data[i + 1 : end]
        if chunk.find(b"\x00") >= 0:
            return None
        out.extend(chunk)
        i = end
        # Every block but a full one (0xFF) and the last stands for a following zero.
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- frames ---------------------------------------------------------------------------------


class Frame:
    """One accepted frame: header fields and the raw payload."""

    def __init__(self, version: int, type: int, flags: int, seq: int, payload: bytes) -> None:
        self.version = version
        self.type = type
        self.flags = flags
        self.seq = seq
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.version == other.version
            and self.type == other.type
            and self.flags == other.flags
            and self.seq == other.seq
            and self.payload == other.payload
        )

    def __repr__(self) -> str:
        # MicroPython f-strings have no !r conversion and no adjacent-literal joining.
        head = f"Frame(version=0x{self.version:02x}, type=0x{self.type:02x}, "
        tail = f"flags=0x{self.flags:02x}, seq={self.seq}, payload="
        return head + tail + repr(self.payload) + ")"


def encode_body(
    msg_type: int, seq: int, payload: bytes = b"", flags: int = 0, version: int = VERSION
) -> bytes:
    """Header + payload + CRC, before COBS (what the CRC and the length field cover)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload longer than 255 bytes")
    if not (0 <= msg_type <= 0xFF and 0 <= flags <= 0xFF and 0 <= version <= 0xFF):
        raise ValueError("type, flags and version are single bytes")
    head = struct.pack(_HEADER, version, msg_type, flags, seq & 0xFFFF, len(payload))
    body = head + bytes(payload)
    return body + struct.pack("<I", crc32(body))


def encode_frame(
    msg_type: int, seq: int, payload: bytes = b"", flags: int = 0, version: int = VERSION
) -> bytes:
    """A complete frame ending with the 0x00 delimiter. `seq` is taken modulo 2**16."""
    return cobs_encode(encode_body(msg_type, seq, payload, flags, version)) + b"\x00"


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, get back accepted frames.

    Never raises on any bytes. Bad frames are counted and skipped; the decoder
    resynchronises at the next 0x00. Sequence numbers are tracked per stream (one
    decoder per link direction) to count gaps.
    """

    def __init__(self) -> None:
        self.frames_ok = 0
        self.cobs_errors = 0
        self.crc_errors = 0
        self.length_errors = 0
        self.oversize = 0
        self.version_errors = 0
        self.seq_gaps = 0
        self.missed_frames = 0
        self.bytes_discarded = 0
        self._buf = bytearray()
        self._discarding = False  # inside an oversize run: drop until the next 0x00
        self._expected = -1  # next sequence number expected; -1 = unknown

    def reset_sequence(self) -> None:
        """Forget the expected sequence number (e.g. the port was reopened)."""
        self._expected = -1

    def stats(self) -> "dict[str, int]":
        return {
            "frames_ok": self.frames_ok,
            "cobs_errors": self.cobs_errors,
            "crc_errors": self.crc_errors,
            "length_errors": self.length_errors,
            "oversize": self.oversize,
            "version_errors": self.version_errors,
            "seq_gaps": self.seq_gaps,
            "missed_frames": self.missed_frames,
            "bytes_discarded": self.bytes_discarded,
        }

    def feed(self, data: "bytes | bytearray | memoryview") -> "list[Frame]":
        if not isinstance(data, bytes):
            data = bytes(data)  # bytearray/memoryview have no find() in MicroPython
        frames = []
        i = 0
        n = len(data)
        while i < n:
            j = data.find(b"\x00", i)
            if j < 0:
                if self._discarding:
                    self.bytes_discarded += n - i
                else:
                    self._buf.extend(data[i:])
                    if len(self._buf) > MAX_ENCODED:
                        # No delimiter where one must have been: drop until the next one.
                        self.oversize += 1
                        self.bytes_discarded += len(self._buf)
                        self._buf = bytearray()
                        self._discarding = True
                break
            if self._discarding:
                self.bytes_discarded += j - i + 1
                self._discarding = False
            else:
                self._buf.extend(data[i:j])
                encoded = bytes(self._buf)
                self._buf = bytearray()
                if len(encoded) > MAX_ENCODED:
                    self.oversize += 1
                    self.bytes_discarded += len(encoded) + 1
                elif encoded:  # an empty frame is a line-wake preamble, not an error
                    frame = self._accept(encoded)
                    if frame is None:
                        self.bytes_discarded += len(encoded) + 1
                    else:
                        frames.append(frame)
            i = j + 1
        return frames

    def _accept(self, encoded: bytes) -> "Frame | None":
        body = cobs_decode(encoded)
        if body is None:
            self.cobs_errors += 1
            return None
        if len(body) < MIN_BODY:
            self.length_errors += 1
            return None
        end = len(body) - CRC_SIZE
        if struct.unpack_from("<I", body, end)[0] != crc32(body[:end]):
            self.crc_errors += 1
            return None
        version, msg_type, flags, seq, length = struct.unpack_from(_HEADER, body, 0)
        if version >> 4 != PROTOCOL_MAJOR:
            self.version_errors += 1
            return None
        if length != end - HEADER_SIZE:
            self.length_errors += 1
            return None
        self.frames_ok += 1
        self._track(msg_type, flags, seq)
        return Frame(version, msg_type, flags, seq, body[HEADER_SIZE:end])

    def _track(self, msg_type: int, flags: int, seq: int) -> None:
        expected = self._expected
        self._expected = (seq + 1) & 0xFFFF
        if msg_type == HELLO or expected < 0:
            return  # a HELLO starts a new sequence (the sender rebooted or was asked)
        ahead = (seq - expected) & 0xFFFF
        if ahead >= 0x8000:
            # An old number. A retransmission or a late reply says nothing about what
            # comes next; an unflagged one means the sender restarted without its HELLO
            # reaching us, so follow it.
            if flags & (RETRANSMISSION | REPLY):
                self._expected = expected
            return
        if ahead and not flags & (RETRANSMISSION | REPLY):
            self.seq_gaps += 1
            self.missed_frames += ahead


def flag_names(flags: int) -> "list[str]":
    out = []
    for bit, name in FLAG_NAMES:
        if flags & bit:
            out.append(name)
    return out


def capability_names(capabilities: int) -> "list[str]":
    out = []
    for bit, name in CAPABILITY_NAMES:
        if capabilities & bit:
            out.append(name)
    return out


# --- payloads -------------------------------------------------------------------------------
# Every device event starts with dev_ms: u64 milliseconds since the device booted.
# A newer minor version may only append fields, so decoders read the known prefix and
# ignore any tail.


def pack_hello(
    dev_ms: int,
    fw_version: "tuple[int, int, int]",
    reset_cause: "int | str",
    capabilities: int,
    probe_count: int,
    lane_count: int,
    boot_count: int,
    device_id: str,
    protocol: "tuple[int, int]" = (PROTOCOL_MAJOR, PROTOCOL_MINOR),
) -> bytes:
    ident = device_id.encode("utf-8")
    if len(ident) > MAX_DEVICE_ID:
        raise ValueError("device id longer than 232 UTF-8 bytes")
    head = struct.pack(
        _HELLO,
        dev_ms,
        protocol[0],
        protocol[1],
        fw_version[0],
        fw_version[1],
        fw_version[2],
        _code(RESET_CAUSE_NAMES, reset_cause),
        capabilities,
        probe_count,
        lane_count,
        boot_count,
        len(ident),
    )
    return head + ident


def pack_heartbeat(
    dev_ms: int, free_mem: int, rx_errors: int = 0, probe_errors: int = 0, tx_dropped: int = 0
) -> bytes:
    """Counters wrap at 2**16; free memory saturates at 2**32 - 1."""
    return struct.pack(
        _HEARTBEAT,
        dev_ms,
        min(free_mem, 0xFFFFFFFF),
        rx_errors & 0xFFFF,
        probe_errors & 0xFFFF,
        tx_dropped & 0xFFFF,
    )


def celsius_to_raw(celsius: float) -> int:
    """Degrees to the DS18B20's 1/16 °C unit (exact for any value the sensor produces)."""
    return round(celsius * 16)


def pack_temp(dev_ms: int, probes: "list[tuple[int, int | str, float | None]]") -> bytes:
    """probes: (index, status code or name, celsius or None) — the shape decode gives back.

    None travels as raw 0; the receiver ignores the value unless the status is ok/suspect.
    """
    if len(probes) > MAX_PROBES:
        raise ValueError("more than 61 probes")
    out = bytearray(struct.pack(_TEMP_HEAD, dev_ms, len(probes)))
    for index, status, celsius in probes:
        raw = 0 if celsius is None else celsius_to_raw(celsius)
        out.extend(struct.pack(_PROBE, index, _code(PROBE_STATUS_NAMES, status), raw))
    return bytes(out)


def pack_door(dev_ms: int, is_open: bool, duration_ms: int) -> bytes:
    """duration_ms: how long the state that just ended lasted (saturates at 2**32 - 1)."""
    return struct.pack(_DOOR, dev_ms, 1 if is_open else 0, min(duration_ms, 0xFFFFFFFF))


def pack_compressor(dev_ms: int, on: bool, reason: "int | str") -> bytes:
    return struct.pack(_EVENT, dev_ms, 1 if on else 0, _code(COMPRESSOR_REASON_NAMES, reason))


def pack_power(dev_ms: int, mains: bool, backup_mv: int) -> bytes:
    return struct.pack(_POWER, dev_ms, 1 if mains else 0, min(backup_mv, 0xFFFF))


def pack_defrost(dev_ms: int, active: bool, reason: "int | str") -> bytes:
    return struct.pack(_EVENT, dev_ms, 1 if active else 0, _code(DEFROST_REASON_NAMES, reason))


def pack_lanes(dev_ms: int, lanes: "list[tuple[int, bool]]") -> bytes:
    """lanes: (grams, stable) for lane 0, 1, ... in order; grams saturate at the i32 range."""
    if len(lanes) > MAX_LANES:
        raise ValueError("more than 49 lanes")
    out = bytearray(struct.pack(_LANES_HEAD, dev_ms, len(lanes)))
    for grams, stable in lanes:
        g = max(_I32_MIN, min(_I32_MAX, int(grams)))
        out.extend(struct.pack(_LANE, g, LANE_STABLE if stable else 0))
    return bytes(out)


def pack_lock(dev_ms: int, locked: bool, reason: "int | str") -> bytes:
    return struct.pack(_EVENT, dev_ms, 1 if locked else 0, _code(LOCK_REASON_NAMES, reason))


def pack_get_hello() -> bytes:
    return b""


def pack_ack(acked_seq: int, status: "int | str" = ACK_OK) -> bytes:
    return struct.pack(_ACK, acked_seq & 0xFFFF, _code(ACK_STATUS_NAMES, status))


def pack_receipt(boot_count: int, seqs: "list[int]") -> bytes:
    """Host -> device: these logged frames of boot `boot_count` are stored durably."""
    if len(seqs) > MAX_RECEIPT_SEQS:
        raise ValueError("too many sequence numbers for one RECEIPT")
    out = bytearray(struct.pack("<IB", boot_count & 0xFFFFFFFF, len(seqs)))
    for seq in seqs:
        out += struct.pack("<H", seq & 0xFFFF)
    return bytes(out)


def pack_set_point(tenths_c: int) -> bytes:
    """New thermostat set point in tenths of a degree Celsius (i16)."""
    return struct.pack("<h", tenths_c)


def pack_defrost_now(minutes: int = 0) -> bytes:
    """Start a defrost now; 0 minutes = the configured duration."""
    return struct.pack("<H", minutes)


def pack_unlock(seconds: int) -> bytes:
    """Release the lock; it re-locks when the door closes or after `seconds`."""
    return struct.pack("<H", seconds)


def pack_reboot() -> bytes:
    return b""


def pack_tare(lane: int) -> bytes:
    return struct.pack("<B", lane)


def pack_calibrate(lane: int, grams: int) -> bytes:
    """The weight now on `lane` is `grams` (a reference weight)."""
    return struct.pack("<BI", lane, grams)


def _decode_set_point(p: bytes) -> "dict[str, Any] | None":
    if len(p) < 2:
        return None
    return {"type": "set_point", "tenths_c": struct.unpack_from("<h", p, 0)[0]}


def _decode_defrost_now(p: bytes) -> "dict[str, Any] | None":
    if len(p) < 2:
        return None
    return {"type": "defrost_now", "minutes": struct.unpack_from("<H", p, 0)[0]}


def _decode_unlock(p: bytes) -> "dict[str, Any] | None":
    if len(p) < 2:
        return None
    return {"type": "unlock", "seconds": struct.unpack_from("<H", p, 0)[0]}


def _decode_reboot(p: bytes) -> "dict[str, Any] | None":
    return {"type": "reboot"}


def _decode_tare(p: bytes) -> "dict[str, Any] | None":
    if len(p) < 1:
        return None
    return {"type": "tare", "lane": p[0]}


def _decode_calibrate(p: bytes) -> "dict[str, Any] | None":
    if len(p) < 5:
        return None
    lane, grams = struct.unpack_from("<BI", p, 0)
    return {"type": "calibrate", "lane": lane, "grams": grams}


def _decode_receipt(p: bytes) -> "dict[str, Any] | None":
    if len(p) < 5:
        return None
    boot_count, count = struct.unpack_from("<IB", p, 0)
    if len(p) < 5 + 2 * count:
        return None
    seqs = [struct.unpack_from("<H", p, 5 + 2 * k)[0] for k in range(count)]
    return {"type": "receipt", "boot_count": boot_count, "seqs": seqs}


def _decode_hello(p: bytes) -> "dict[str, Any] | None":
    fixed = struct.calcsize(_HELLO)
    if len(p) < fixed:
        return None
    (dev_ms, pmaj, pmin, fmaj, fmin, fpat, cause, caps, probes, lanes, boots, id_len) = (
        struct.unpack_from(_HELLO, p, 0)
    )
    if len(p) < fixed + id_len:
        return None
    try:
        device_id = bytes(p[fixed : fixed + id_len]).decode("utf-8")
    except ValueError:  # UnicodeDecodeError (CPython) and UnicodeError (MicroPython)
        return None
    return {
        "type": "hello",
        "dev_ms": dev_ms,
        "protocol": [pmaj, pmin],
        "firmware": [fmaj, fmin, fpat],
        "reset_cause": _name(RESET_CAUSE_NAMES, cause),
        "capabilities": caps,
        "probe_count": probes,
        "lane_count": lanes,
        "boot_count": boots,
        "device_id": device_id,
    }


def _decode_heartbeat(p: bytes) -> "dict[str, Any] | None":
    if len(p) < struct.calcsize(_HEARTBEAT):
        return None
    dev_ms, free_mem, rx_errors, probe_errors, tx_dropped = struct.unpack_from(_HEARTBEAT, p, 0)
    return {
        "type": "heartbeat",
        "dev_ms": dev_ms,
        "free_mem": free_mem,
        "rx_errors": rx_errors,
        "probe_errors": probe_errors,
        "tx_dropped": tx_dropped,
    }


def _decode_temp(p: bytes) -> "dict[str, Any] | None":
    head = struct.calcsize(_TEMP_HEAD)
    if len(p) < head:
        return None
    dev_ms, count = struct.unpack_from(_TEMP_HEAD, p, 0)
    if len(p) < head + 4 * count:
        return None
    probes = []
    for k in range(count):
        index, status, raw = struct.unpack_from(_PROBE, p, head + 4 * k)
        celsius = raw / 16 if status in (STATUS_OK, STATUS_SUSPECT) else None
        probes.append((index, _name(PROBE_STATUS_NAMES, status), celsius))
    return {"type": "temp", "dev_ms": dev_ms, "probes": probes}


def _decode_door(p: bytes) -> "dict[str, Any] | None":
    if len(p) < struct.calcsize(_DOOR):
        return None
    dev_ms, is_open, duration_ms = struct.unpack_from(_DOOR, p, 0)
    return {"type": "door", "dev_ms": dev_ms, "open": is_open != 0, "duration_ms": duration_ms}


def _decode_compressor(p: bytes) -> "dict[str, Any] | None":
    if len(p) < struct.calcsize(_EVENT):
        return None
    dev_ms, on, reason = struct.unpack_from(_EVENT, p, 0)
    return {
        "type": "compressor",
        "dev_ms": dev_ms,
        "on": on != 0,
        "reason": _name(COMPRESSOR_REASON_NAMES, reason),
    }


def _decode_power(p: bytes) -> "dict[str, Any] | None":
    if len(p) < struct.calcsize(_POWER):
        return None
    dev_ms, mains, backup_mv = struct.unpack_from(_POWER, p, 0)
    return {"type": "power", "dev_ms": dev_ms, "mains": mains != 0, "backup_mv": backup_mv}


def _decode_defrost(p: bytes) -> "dict[str, Any] | None":
    if len(p) < struct.calcsize(_EVENT):
        return None
    dev_ms, active, reason = struct.unpack_from(_EVENT, p, 0)
    return {
        "type": "defrost",
        "dev_ms": dev_ms,
        "active": active != 0,
        "reason": _name(DEFROST_REASON_NAMES, reason),
    }


def _decode_lanes(p: bytes) -> "dict[str, Any] | None":
    head = struct.calcsize(_LANES_HEAD)
    if len(p) < head:
        return None
    dev_ms, count = struct.unpack_from(_LANES_HEAD, p, 0)
    if len(p) < head + 5 * count:
        return None
    lanes = []
    for k in range(count):
        grams, flags = struct.unpack_from(_LANE, p, head + 5 * k)
        lanes.append({"lane": k, "grams": grams, "stable": bool(flags & LANE_STABLE)})
    return {"type": "lanes", "dev_ms": dev_ms, "lanes": lanes}


def _decode_lock(p: bytes) -> "dict[str, Any] | None":
    if len(p) < struct.calcsize(_EVENT):
        return None
    dev_ms, locked, reason = struct.unpack_from(_EVENT, p, 0)
    return {
        "type": "lock",
        "dev_ms": dev_ms,
        "locked": locked != 0,
        "reason": _name(LOCK_REASON_NAMES, reason),
    }


def _decode_get_hello(p: bytes) -> "dict[str, Any] | None":
    return {"type": "get_hello"}


def _decode_ack(p: bytes) -> "dict[str, Any] | None":
    if len(p) < struct.calcsize(_ACK):
        return None
    acked_seq, status = struct.unpack_from(_ACK, p, 0)
    return {"type": "ack", "acked_seq": acked_seq, "status": _name(ACK_STATUS_NAMES, status)}


_DECODERS = {
    HELLO: _decode_hello,
    HEARTBEAT: _decode_heartbeat,
    TEMP: _decode_temp,
    DOOR: _decode_door,
    COMPRESSOR: _decode_compressor,
    POWER: _decode_power,
    DEFROST: _decode_defrost,
    LANES: _decode_lanes,
    LOCK: _decode_lock,
    GET_HELLO: _decode_get_hello,
    RECEIPT: _decode_receipt,
    SET_POINT: _decode_set_point,
    DEFROST_NOW: _decode_defrost_now,
    UNLOCK: _decode_unlock,
    REBOOT: _decode_reboot,
    TARE: _decode_tare,
    CALIBRATE: _decode_calibrate,
    ACK: _decode_ack,
}


def decode_message(msg_type: int, payload: bytes) -> "dict[str, Any] | None":
    """Named fields of a payload, with "type" = the lower-case type name.

    None for an unknown type or a payload too short for its type. Longer payloads are
    accepted (a newer minor version appends fields) and the tail is ignored.
    """
    decoder = _DECODERS.get(msg_type)
    if decoder is None:
        return None
    return decoder(bytes(payload))
