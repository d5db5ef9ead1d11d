"""The Wireshark dissector (firmware_bridge/wireshark/xiaodian_serial.lua) against the
reference codec: real tshark on the golden capture must decode every frame type to the
values `codec.decode_message` gives, and reject exactly what `FrameDecoder` rejects."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import golden_frames
import pytest

from firmware_bridge import codec, fwmsg, pcapng

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "firmware_bridge" / "wireshark" / "xiaodian_serial.lua"
FIELDS = ("dir", "error", "type_name", "seq", "flags", "dev_ms", "protocol", "firmware",
          "reset_cause", "capabilities", "probe_count", "lane_count", "boot_count",
          "device_id", "free_mem", "rx_errors", "probe_errors", "tx_dropped", "probe",
          "probe_status", "celsius", "open", "duration_ms", "on", "reason", "mains",
          "backup_mv", "active", "locked", "lane", "grams", "stable", "receipt_seq",
          "tenths_c", "minutes", "seconds", "acked_seq", "status",
          "fw.sha256", "fw.size", "fw.version", "fw.hardware", "fw.offset", "fw.tag",
          "fw.data_len", "fw.state", "fw.next_offset", "fw.action", "fw.result")

needs_tshark = pytest.mark.skipif(
    shutil.which("tshark") is None,
    reason="tshark is not installed (Debian package tshark; scripts/bootstrap.sh installs it)")


def tshark_fields(capture: Path) -> list[dict[str, str]]:
    cmd = ["tshark", "-X", f"lua_script:{LUA}", "-r", str(capture), "-T", "fields",
           "-E", "occurrence=a", "-E", "aggregator=,", "-e", "xiaodian_scan.line"]
    for name in FIELDS:
        cmd += ["-e", f"xiaodian.{name}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)
    rows = []
    for line in done.stdout.splitlines():
        values = line.split("\t")
        rows.append(dict(zip(("scan_line", *FIELDS), values, strict=True)))
    return rows


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def expected(direction: int, wire: bytes) -> dict[str, str]:
    """What tshark must show for one packet, from the reference decoder."""
    out = dict.fromkeys(FIELDS, "")
    out["scan_line"] = ""
    out["dir"] = "from device" if direction == pcapng.INBOUND else "to device"
    decoder = codec.FrameDecoder()
    frames = decoder.feed(wire)
    if not frames:
        stats = decoder.stats()
        (counter,) = [k for k in ("cobs_errors", "crc_errors", "version_errors",
                                  "length_errors") if stats[k]]
        out["error"] = counter
        return out
    (frame,) = frames
    msg = dict(codec.decode_message(frame.type, frame.payload)
               or fwmsg.decode(frame.type, frame.payload) or {})
    out["type_name"] = str(msg.pop("type"))
    out["seq"] = str(frame.seq)
    out["flags"] = f"0x{frame.flags:02x}"
    for key, value in msg.items():
        if key in ("protocol", "firmware"):
            out[key] = ".".join(map(str, value))
        elif key == "capabilities":
            out[key] = f"0x{value:04x}"
        elif key == "probes":
            out["probe"] = ",".join(str(i) for i, _, _ in value)
            out["probe_status"] = ",".join(s for _, s, _ in value)
            out["celsius"] = ",".join(_text(c) for _, _, c in value if c is not None)
        elif key == "lanes":
            for sub in ("lane", "grams", "stable"):
                out[sub] = ",".join(_text(lane[sub]) for lane in value)
        elif key == "seqs":
            out["receipt_seq"] = ",".join(map(str, value))
        elif out["type_name"] in fwmsg.TYPE_NAMES.values() and key != "dev_ms":
            fw = {"sha256": bytes(value).hex() if key == "sha256" else "",
                  "version": ".".join(map(str, value)) if key == "version" else "",
                  "tag": f"0x{value:08x}" if key == "tag" else "",
                  "data": str(len(value)) if key == "data" else ""}.get(key) or _text(value)
            out["fw.data_len" if key == "data" else f"fw.{key}"] = fw
        else:
            out[key] = _text(value)
    return out


def test_the_golden_capture_is_what_the_writer_makes() -> None:
    assert golden_frames.GOLDEN.read_bytes() == golden_frames.build()
    interfaces, packets = pcapng.read(golden_frames.GOLDEN.read_bytes())
    assert [(i.name, i.linktype) for i in interfaces] == [("fridge-1", 147), ("scanner-1", 148)]
    assert [(p.direction, p.data) for p in packets[:-1]] == golden_frames.frames()
    # Every message type of the protocol is in it, in one direction or the other.
    decoded = {f.type for _, wire in golden_frames.frames()
               for f in codec.FrameDecoder().feed(wire)}
    assert decoded == set(codec.TYPE_NAMES) | set(fwmsg.TYPE_NAMES)


@needs_tshark
def test_tshark_decodes_every_frame_as_the_codec_does() -> None:
    rows = tshark_fields(golden_frames.GOLDEN)
    want = [expected(d, w) for d, w in golden_frames.frames()]
    got = rows[: len(want)]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if w["error"]:
            # "short" and "length" are both the codec's length_errors.
            kind = {"cobs_errors": {"cobs"}, "crc_errors": {"crc"},
                    "version_errors": {"version"}, "length_errors": {"short", "length"}}
            assert g["error"] in kind[w["error"]], (i, g)
            assert g["dir"] == w["dir"]
        else:
            assert g == w, i
    assert rows[-1]["scan_line"] == "]E006901234567892"
