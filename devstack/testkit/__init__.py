"""Helpers shared by the tests and the benchmarks (`tests/` and `bench/` both import them
from here and never import each other; `lint-imports` checks the benchmark side).

- `devstack.testkit.wait`: `wait(cond, timeout, what)`, the one poll-until-true.
- `devstack.testkit.http_client`: the one small HTTP client (GET/POST/PUT, JSON, bearer token),
  answering status, headers and body.
- `devstack.testkit.edge`: edge agent configs and their TOML, the agent in a thread (alone or
  beside the simulator) or as a process, one quiet simulated fridge, the shop seeded in the
  terminal's database before the agent starts, pseudo-terminal links, a free port, reading
  the edge's SQLite, a cloud ingest worker.
- `devstack.testkit.browser`: headless Chromium for page tests, what a reader checks on every
  page (`reader_checks`: no English but data, nothing wider than the screen), the cloud's
  login form (`log_in`).
- `devstack.testkit.cli`: the `xiaodian` command in-process, whole or only some modules'
  commands.
- `devstack.testkit.mqtt_clients`: paho clients on the test broker (TLS, per-name
  certificates): connected, subscribed with the SUBACK awaited, a one-shot publish.
- `devstack.testkit.webhooks`: a loopback webhook receiver verifying the cloud's signatures,
  the [alerts] TOML making it a store owner's channel, fault windows from ground truth.
- `devstack.testkit.pg_server`: a private PostgreSQL server (Debian's binaries, a temporary
  cluster) for the test session and the database benchmark.
"""
