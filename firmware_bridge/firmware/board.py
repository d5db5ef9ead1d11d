"""The board: builds the hardware objects the controller drives from MicroPython's
`machine`, `onewire` and `ds18x20` modules and the hx711 driver.

In the simulator these imports resolve to fakes (hw_sim/fakes) and this file runs as is.
"""

import gc

import codec
import ds18x20
import machine
import onewire
import pins
from hx711 import HX711

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _reset_cause() -> int:
    cause = machine.reset_cause()
    # Ports define different subsets of these names (and different values).
    for name, code in (
        ("PWRON_RESET", codec.RESET_POWER_ON),
        ("HARD_RESET", codec.RESET_HARD),
        ("WDT_RESET", codec.RESET_WATCHDOG),
        ("DEEPSLEEP_RESET", codec.RESET_DEEP_SLEEP),
        ("SOFT_RESET", codec.RESET_SOFT),
        ("BROWNOUT_RESET", codec.RESET_BROWNOUT),
    ):
        if getattr(machine, name, None) == cause:
            return code
    return codec.RESET_UNKNOWN


class Board:
    def __init__(self) -> None:
        Pin = machine.Pin
        self.uart = machine.UART(
            pins.UART_ID, baudrate=115200, tx=Pin(pins.UART_TX), rx=Pin(pins.UART_RX), rxbuf=1024
        )
        self.ds: Any = ds18x20.DS18X20(onewire.OneWire(Pin(pins.ONEWIRE)))
        self.compressor = Pin(pins.COMPRESSOR, Pin.OUT, value=0)
        self.heater = Pin(pins.HEATER, Pin.OUT, value=0)
        self.door = Pin(pins.DOOR, Pin.IN, Pin.PULL_UP)
        self.lock = Pin(pins.LOCK, Pin.OUT, value=0)
        self.mains = Pin(pins.MAINS, Pin.IN)
        self.backup_adc = machine.ADC(Pin(pins.BACKUP_ADC))
        self.cells = [HX711(Pin(d, Pin.IN), Pin(s, Pin.OUT)) for d, s in pins.LANES]
        self.reset_cause = _reset_cause()
        self.device_id = "fridge-" + "".join(f"{b:02x}" for b in machine.unique_id()[-3:])

    def watchdog(self, timeout_ms: int) -> "Any":
        return machine.WDT(timeout=timeout_ms)

    def reset(self) -> None:
        machine.reset()

    def mem_free(self) -> int:
        f = getattr(gc, "mem_free", None)  # MicroPython only
        return f() if f is not None else 0
