"""Firmware-update messages (docs/protocol.md §4.10): golden frames, round trips, truncation,
and the same results under the real micropython binary."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import codec, fwmsg
from hw_sim.micropython_host import micropython_binary

MICROPYTHON = micropython_binary()


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def reference_crc32(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xEDB88320 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF

SHA = bytes(range(1, 33))  # 01 02 .. 20
SHA_HEX = SHA.hex()

GOLDEN = [
    # name, type, seq, flags, payload (laid out by hand from the tables), frame on the wire
    ("offer", fwmsg.FW_OFFER, 7, 0,
     SHA_HEX + " 00f00000 01 01 00 0b" + b"xd-fridge-1".hex(),
     "03 10 40 02 07 22 33" + SHA_HEX + "02 f0 01 03 01 01 0d 0b" + b"xd-fridge-1".hex()
     + "04 c1 2e 5e 00"),
    ("chunk", fwmsg.FW_CHUNK, 8, 0, "e0010000 01020304 4d0006",
     "03 10 41 02 08 04 0b e0 01 01 06 01 02 03 04 4d 06 06 94 81 c8 66 00"),
    ("status", fwmsg.FW_STATUS, 21, codec.REPLY,
     "8461010000000000 01" + SHA_HEX + "d0020000 00f00000",
     "05 10 42 04 15 05 31 84 61 01 01 01 01 01 24 01" + SHA_HEX + "d0 02 01 01 02 f0 01 05"
     " 95 6e 5b 84 00"),
    ("commit", fwmsg.FW_COMMIT, 9, 0, SHA_HEX + "00",
     "03 10 43 02 09 22 21" + SHA_HEX + "05 46 7c 37 2c 00"),
    ("result", fwmsg.FW_RESULT, 22, codec.REPLY, "7863010000000000" + SHA_HEX + "01",
     "05 10 44 04 16 05 29 78 63 01 01 01 01 01 26" + SHA_HEX + "01 79 68 7b 43 00"),
    # the device's own signature check refused the image (code 16)
    ("refused", fwmsg.FW_RESULT, 23, codec.REPLY, "6067010000000000" + SHA_HEX + "10",
     "05 10 44 04 17 05 29 60 67 01 01 01 01 01 26" + SHA_HEX + "10 22 97 eb a4 00"),
]


def packed(name: str) -> bytes:
    if name == "offer":
        return fwmsg.pack_offer(SHA, 61440, (1, 1, 0), "xd-fridge-1")
    if name == "chunk":
        return fwmsg.pack_chunk(480, SHA, b"\x4d\x00\x06")
    if name == "status":
        return fwmsg.pack_status(90500, "receiving", SHA, 720, 61440)
    if name == "commit":
        return fwmsg.pack_commit(SHA, "install")
    if name == "refused":
        return fwmsg.pack_result(92000, SHA, "device_bad_signature")
    return fwmsg.pack_result(91000, SHA, "installed")


@pytest.mark.parametrize(("name", "kind", "seq", "flags", "payload", "frame"), GOLDEN)
def test_golden_update_frames(name: str, kind: int, seq: int, flags: int, payload: str,
                              frame: str) -> None:
    assert packed(name) == h(payload)
    body = codec.encode_body(kind, seq, h(payload), flags)
    assert body[-4:] == reference_crc32(body[:-4]).to_bytes(4, "little")
    assert codec.encode_frame(kind, seq, h(payload), flags) == h(frame)
    [got] = codec.FrameDecoder().feed(h(frame))
    assert got == codec.Frame(codec.VERSION, kind, flags, seq, h(payload))


def test_decoded_fields() -> None:
    assert fwmsg.decode(fwmsg.FW_OFFER, packed("offer")) == {
        "type": "fw_offer", "sha256": SHA, "size": 61440, "version": [1, 1, 0],
        "hardware": "xd-fridge-1"}
    assert fwmsg.decode(fwmsg.FW_CHUNK, packed("chunk")) == {
        "type": "fw_chunk", "offset": 480, "tag": 0x04030201, "data": b"\x4d\x00\x06"}
    assert fwmsg.decode(fwmsg.FW_STATUS, packed("status")) == {
        "type": "fw_status", "dev_ms": 90500, "state": "receiving", "sha256": SHA,
        "next_offset": 720, "size": 61440}
    assert fwmsg.decode(fwmsg.FW_COMMIT, packed("commit")) == {
        "type": "fw_commit", "sha256": SHA, "action": "install"}
    assert fwmsg.decode(fwmsg.FW_RESULT, packed("result")) == {
        "type": "fw_result", "dev_ms": 91000, "sha256": SHA, "result": "installed"}
    # codes a later minor adds are named, not refused
    assert fwmsg.decode(fwmsg.FW_RESULT, packed("result")[:-1] + b"\x63")["result"] == "unknown_99"


@pytest.mark.parametrize("name", [g[0] for g in GOLDEN])
def test_every_truncation_is_malformed_and_a_tail_is_ignored(name: str) -> None:
    kind = {g[0]: g[1] for g in GOLDEN}[name]
    payload = packed(name)
    whole = fwmsg.decode(kind, payload)
    minimum = 9 if name == "chunk" else len(payload)
    for cut in range(minimum):
        assert fwmsg.decode(kind, payload[:cut]) is None, cut
    if name != "chunk":  # a chunk's tail is its data
        assert fwmsg.decode(kind, payload + b"\x01\x02") == whole


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.binary(min_size=32, max_size=32),
       st.binary(min_size=1, max_size=fwmsg.MAX_CHUNK_DATA))
def test_chunk_round_trip(offset: int, sha: bytes, data: bytes) -> None:
    payload = fwmsg.pack_chunk(offset, sha, data)
    assert len(codec.encode_frame(fwmsg.FW_CHUNK, 0, payload)) <= codec.MAX_FRAME
    assert fwmsg.decode(fwmsg.FW_CHUNK, payload) == {
        "type": "fw_chunk", "offset": offset, "tag": fwmsg.tag_of(sha), "data": data}


def test_packers_refuse_what_cannot_travel() -> None:
    with pytest.raises(ValueError):
        fwmsg.pack_chunk(0, SHA, b"")
    with pytest.raises(ValueError):
        fwmsg.pack_chunk(0, SHA, bytes(fwmsg.MAX_CHUNK_DATA + 1))
    with pytest.raises(ValueError):
        fwmsg.pack_commit(SHA[:31], "install")
    with pytest.raises(ValueError):
        fwmsg.pack_offer(SHA, 1, (1, 0, 0), "x" * (fwmsg.MAX_HARDWARE + 1))


MP_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {path!r})
    import json
    import fwmsg
    sha = bytes(range(1, 33))
    out = [
        list(fwmsg.pack_offer(sha, 61440, (1, 1, 0), "xd-fridge-1")),
        list(fwmsg.pack_chunk(480, sha, b"\\x4d\\x00\\x06")),
        list(fwmsg.pack_status(90500, "receiving", sha, 720, 61440)),
        list(fwmsg.pack_commit(sha, "install")),
        list(fwmsg.pack_result(91000, sha, "installed")),
    ]
    for t, p in zip((0x40, 0x41, 0x42, 0x43, 0x44), out):
        d = fwmsg.decode(t, bytes(p))
        out.append(sorted((k, list(v) if isinstance(v, bytes) else v) for k, v in d.items()))
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(MICROPYTHON is None, reason="no micropython binary (set MICROPYTHON)")
def test_update_messages_under_micropython(tmp_path: Path) -> None:
    script = tmp_path / "mp_fw.py"
    script.write_text(MP_SCRIPT.format(path=str(Path(fwmsg.__file__).parent)))
    outputs = []
    for interpreter in (MICROPYTHON, sys.executable):
        assert interpreter is not None
        run = subprocess.run([interpreter, str(script)], capture_output=True, text=True,
                             timeout=60, check=False)
        assert run.returncode == 0, run.stderr
        outputs.append(json.loads(run.stdout))
    assert outputs[0] == outputs[1]
    assert bytes(outputs[1][0]) == packed("offer")


def test_serial_decode_names_the_update_frames() -> None:
    from firmware_bridge.cli import frame_record

    [frame] = codec.FrameDecoder().feed(h(GOLDEN[2][5]))  # the FW_STATUS
    assert frame_record(frame) == {
        "seq": 21, "type": "fw_status", "version": "1.0", "flags": ["reply"],
        "fields": {"dev_ms": 90500, "state": "receiving", "sha256": SHA_HEX,
                   "next_offset": 720, "size": 61440}}
    [chunk] = codec.FrameDecoder().feed(h(GOLDEN[1][5]))
    assert frame_record(chunk)["fields"]["data"] == "4d0006"
