# Fake `ds18x20` for fidelity mode: raw values and faults from the simulator's side channel.
import simio
from onewire import OneWireError


def _rom(i):
    return bytes([0x28, i + 1, 0, 0, 0, 0, 0x10, 0])


class DS18X20:
    def __init__(self, ow):
        self.ow = ow
        self._latched = {}

    def _probes(self):
        return simio.state().get("probes", [])

    def scan(self):
        return [_rom(i) for i, p in enumerate(self._probes()) if p[1] != "missing"]

    def convert_temp(self):
        if simio.state().get("hang") == "probes":
            simio.hang()  # the watchdog fault: this call never returns
        probes = self._probes()
        if not [p for p in probes if p[1] != "missing"]:
            raise OneWireError("no presence")
        self._latched = {}
        for i, p in enumerate(probes):
            self._latched[_rom(i)] = p

    def read_temp(self, rom):
        p = self._latched.get(bytes(rom))
        if p is None or p[1] == "missing":
            raise OneWireError("no presence")
        if p[1] == "crc":
            raise Exception("CRC error")
        if p[1] == "power_on":
            return 85.0
        return p[0] / 16
