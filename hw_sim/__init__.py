"""Hardware simulator: fridge physics and controller, a barcode scanner, on pseudo-terminals.

`thermal` (physics), `hardware` (probes, door), `controller` (the fridge's logic and
protocol), `fridge` and `scanner` (devices on ptys), `ptylink`, `clock`, `scenario`,
`truth`, `runner` (composition root) and `cli` (`xiaodian sim run`).
"""
