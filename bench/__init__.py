"""Benchmarks of the store-and-forward path (issue 4). Run one with `python -m bench.<name>`,
all of them with `python -m bench.run_all`; `docs/benchmarks.md` explains the figures."""
