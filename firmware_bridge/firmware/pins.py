"""Pin map of the controller board (an RP2040 or ESP32 module on the fridge's PCB).

Kept apart from board.py, which imports the hardware modules, so the simulator can wire
its fakes to the same numbers.
"""

UART_ID = 0
UART_TX = 0
UART_RX = 1
ONEWIRE = 2  # DS18B20 bus: air, product and, when config says evaporator_probe, the coil
COMPRESSOR = 3  # relay, 1 = running
HEATER = 4  # defrost heater relay, 1 = heating
DOOR = 5  # reed switch to ground with pull-up: 1 = open
LOCK = 6  # lock coil driver, 1 = energised = locked
MAINS = 7  # optocoupler on the mains side, 1 = mains present
BACKUP_ADC = 26  # backup cell through a 1:2 divider
LANES = ((10, 11), (12, 13), (14, 15), (16, 17))  # HX711 (DOUT, PD_SCK) per lane
