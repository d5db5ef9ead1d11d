"""Helpers shared by the tests (and by the benchmarks, which import them as
`tests.helpers.*` when run with `python -m bench.NAME` from the repository root).

The tests import them as `helpers.*`: pytest puts `tests/` on `sys.path` (rootdir
conftest, no `tests/__init__.py`), so no `pythonpath` setting is needed.

- `helpers.edge`: edge agent configs and their TOML, the agent in a thread (alone or beside
  the simulator) or as a process, pseudo-terminal links, a free port, waiting, reading the
  edge's SQLite, a cloud ingest worker.
- `helpers.broker`: paho clients on the test broker (TLS, per-name certificates): connected,
  subscribed with the SUBACK awaited, a one-shot publish.
"""
