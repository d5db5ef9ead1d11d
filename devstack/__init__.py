"""The composition root: the one package that may import every other.

It holds the `xiaodian` command's dispatcher, the demo, `StoreStack` (a whole store as real
processes for the demo, the tests and the benchmarks), the Mosquitto process control and
configuration, and the reconciliation of a run against the simulator's ground truth. Nothing
in the product imports it; tests and benchmarks do.
"""
