"""DS18B20 probes on one 1-Wire bus: one conversion for the whole bus, then a read per ROM.

`start()` issues CONVERT T to every probe at once; 750 ms later (12-bit resolution)
`read()` fetches each scratchpad. Statuses are the protocol's: ok, crc (scratchpad CRC
failed), missing (no presence pulse, or the -127 some drivers return), suspect (85.0 °C,
the power-on value: a probe that reset or never converted).
"""

import codec
from onewire import OneWireError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CONVERSION_MS = 750
RAW_POWER_ON = 85 * 16
RAW_MISSING = -127 * 16
EVAPORATOR = 2  # probe number of the defrost termination probe, when one is fitted


def rom_hex(rom: "bytes | bytearray") -> str:
    return "".join(f"{b:02x}" for b in rom)


def rom_bytes(text: str) -> bytes:
    return bytes(int(text[i : i + 2], 16) for i in range(0, len(text), 2))


class ProbeBus:
    def __init__(self, ds: "Any", roms: "list[bytes | None]") -> None:
        self.ds = ds
        self.roms = roms  # index = probe number (0 air, 1 product, 2 evaporator); None: not found
        self.errors = 0  # failed reads since boot (HEARTBEAT probe_errors)
        self._converting = False

    def start(self) -> None:
        """Start a conversion on every probe; read() may follow CONVERSION_MS later."""
        try:
            self.ds.convert_temp()
            self._converting = True
        except OneWireError:
            self._converting = False  # nobody answered the reset: every probe is missing

    def read(self) -> "list[tuple[int, int, int]]":
        """(index, status code, raw 1/16 °C) per probe; raw is 0 unless ok or suspect."""
        out = []
        for index in range(len(self.roms)):
            status, raw = codec.STATUS_MISSING, 0
            rom = self.roms[index]
            if self._converting and rom is not None:
                status, raw = self._read_one(rom)
            if status in (codec.STATUS_CRC, codec.STATUS_MISSING):
                self.errors += 1
            out.append((index, status, raw))
        self._converting = False
        return out

    def _read_one(self, rom: bytes) -> "tuple[int, int]":
        try:
            value = self.ds.read_temp(rom)
        except OneWireError:
            return codec.STATUS_MISSING, 0
        except Exception:  # the driver raises a bare Exception("CRC error")
            return codec.STATUS_CRC, 0
        if value is None:
            return codec.STATUS_MISSING, 0
        raw = round(value * 16)
        if raw == RAW_MISSING:
            return codec.STATUS_MISSING, 0
        if raw == RAW_POWER_ON:
            return codec.STATUS_SUSPECT, raw
        return codec.STATUS_OK, raw


def assign(found: "list[bytes]", saved: "list[str]", wanted: int) -> "list[bytes]":
    """Probe numbers for the ROMs on the bus. Saved assignments win, so a probe that is
    unplugged at boot keeps its number (and reads missing) instead of the others shifting;
    new ROMs fill the free numbers in sorted order."""
    roms = [rom_bytes(h) for h in saved]
    for rom in sorted(bytes(r) for r in found):
        if rom not in roms and len(roms) < max(wanted, len(saved)):
            roms.append(rom)
    return roms
