"""Fakes of the MicroPython hardware modules the firmware imports, backed by the physics.

- `cpython/` holds `machine`, `onewire`, `ds18x20` and `hx711` for running the firmware
  in-process under CPython (hw_sim/firmware_host.py puts the directory on sys.path).
  They read and write the `SimBoard` (simboard.py) that was active when they were made.
- `mp/` holds the same modules for the real `micropython` binary (fidelity mode): the UART
  is the process's stdin/stdout, sensors come from a JSON file the simulator rewrites and
  outputs go to stderr as lines.
"""
