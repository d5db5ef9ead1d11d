# Test double of MicroPython's onewire module for the probe checks (the unix port has none).


class OneWireError(Exception):
    pass
