"""The edge disk budget on real SQLite files: the WAL counts, compaction never takes a
reading the cloud may hold raw, and the files stay within one check interval's writes."""

from __future__ import annotations

from pathlib import Path

from edge.store import EdgeStore, NewReading


def _reading(dev_ms: int, device: str = "fridge-1") -> NewReading:
    return NewReading(device, fseq=dev_ms // 1000, dev_ms=dev_ms, wall=1.7e9 + dev_ms / 1000,
                      synced=True, probes=[(0, "ok", 3.0625), (1, "ok", 3.5)], dev_boot=1)


def _on_disk(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*")
               if p.name in (db.name, db.name + "-wal", db.name + "-shm"))


def test_a_reading_handed_to_the_network_is_never_compacted(tmp_path: Path) -> None:
    store = EdgeStore(tmp_path / "edge.sqlite3")
    store.add(_reading(ms) for ms in range(10_000, 3_600_001, 10_000))  # seqs 1..360
    # Seqs 1-100 went out; the PUBACK never came back (the broker may still deliver them).
    batch = store.next_batch("readings", "fridge-1", (0, 0), limit=100)
    assert batch is not None
    store.mark_sent(batch.keys)
    done = store.enforce_budget(store.used_bytes() // 3, bucket_s=600)
    assert done["aggregates"] > 0
    seen: list[tuple[int, int]] = []
    after = (0, 0)
    while (b := store.next_batch("readings", "fridge-1", after, limit=500)) is not None:
        seen += [(r["seq"], r.get("seq_last", r["seq"])) for r in b.records]
        after = (b.boot, b.records[-1]["seq"])
    assert seen[:100] == [(s, s) for s in range(1, 101)]  # still raw, each on its own
    assert all(first > 100 for first, last in seen if last > first)
    assert store.sent_unconfirmed("readings", "fridge-1") == 100


def test_sent_marks_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite3"
    store = EdgeStore(db)
    store.add(_reading(ms) for ms in range(10_000, 600_001, 10_000))
    batch = store.next_batch("readings", "fridge-1", (0, 0), limit=10)
    assert batch is not None
    store.mark_sent(batch.keys)
    store.close()
    store = EdgeStore(db)
    assert store.sent_unconfirmed("readings", "fridge-1") == 10
    only = store.next_batch("readings", "fridge-1", (0, 0), limit=500, sent_only=True)
    assert only is not None and [r["seq"] for r in only.records] == list(range(1, 11))


def test_the_wal_counts_against_the_budget_and_is_truncated(tmp_path: Path) -> None:
    db = tmp_path / "edge.sqlite3"
    store = EdgeStore(db)
    store.add(_reading(ms) for ms in range(10_000, 7_200_001, 10_000))
    wal = db.with_name(db.name + "-wal")
    assert wal.stat().st_size > 0
    shm = db.with_name(db.name + "-shm")
    pages_only = store.used_bytes() - wal.stat().st_size - shm.stat().st_size
    assert store.used_bytes() > pages_only  # the WAL and -shm are part of what is used
    budget = pages_only * 2
    store.enforce_budget(budget)
    assert wal.stat().st_size == 0  # checkpointed and truncated, not left to grow
    assert _on_disk(db) <= budget


def test_files_overshoot_the_budget_by_at_most_one_check_interval(tmp_path: Path) -> None:
    """An outage: readings arrive, the budget is checked after each interval's worth, and
    what is on disk (database, WAL, -shm) never passes the budget by more than those writes.
    """
    db = tmp_path / "edge.sqlite3"
    store = EdgeStore(db)
    budget = 300_000
    interval = 60  # readings per check interval, 4 fridges
    per_interval = 0
    worst = 0
    ms = 0
    for _ in range(80):
        before = _on_disk(db)
        batch = []
        for _ in range(interval // 4):
            ms += 10_000
            batch += [_reading(ms, f"fridge-{i}") for i in range(4)]
        store.add(batch)
        per_interval = max(per_interval, _on_disk(db) - before)
        worst = max(worst, _on_disk(db))
        store.enforce_budget(budget, bucket_s=300)
        assert store.used_bytes() == _on_disk(db) <= budget  # the files themselves
    assert worst <= budget + per_interval, (worst, budget, per_interval)


class _SilentCloud:
    """An uplink whose broker takes everything (PUBACK at once) and whose cloud never
    confirms: what a cloud outage behind a healthy broker looks like to the agent."""

    generation = 1
    connected = True

    def __init__(self) -> None:
        self.published: list[list[tuple[str, str, int, int]]] = []

    def can_publish(self) -> bool:
        return True

    def publish(self, topic: str, payload: bytes, keys: list[tuple[str, str, int, int]],
                content_type: str | None = None) -> bool:
        self.published.append(keys)
        return True

    def take_acked(self) -> list[tuple[str, str, int, int]]:
        return []  # the test marks them published itself

    def take_confirmed(self) -> list[object]:
        return []


def test_while_the_cloud_is_silent_only_so_many_readings_go_out(tmp_path: Path) -> None:
    from devstack.testkit.edge import edge_config
    from edge.agent import Agent
    from xiaodian.mqtt import MqttSettings, TlsSettings

    tls = TlsSettings(tmp_path / "ca.crt", tmp_path / "c.crt", tmp_path / "c.key")
    cfg = edge_config(tmp_path / "edge", MqttSettings("127.0.0.1", 1, tls), max_batch=100,
                      unconfirmed_readings_max=300)
    agent = Agent(cfg)
    assert agent.outbox.unconfirmed_cap == 300
    uplink = _SilentCloud()
    agent.outbox.link = uplink
    try:
        agent.store.add(_reading(ms) for ms in range(10_000, 10_000_001, 10_000))  # 1000
        for _ in range(3):  # three rounds: published, PUBACKed, never confirmed, resent
            agent.outbox.publish()
            for keys in uplink.published:
                agent.store.mark_published(keys, 0.0)
            agent.store.republish_unconfirmed()
            agent.outbox.forget_cursors()
        sent = {k for keys in uplink.published for k in keys}
        assert len(sent) == 300  # the same 300 again and again, the rest kept back
        assert agent.store.sent_unconfirmed("readings", "fridge-1") == 300
        # ...and those stay compactable under the disk budget.
        agent.store.checkpoint()  # what the WAL held is not what compaction can win
        done = agent.store.enforce_budget(agent.store.used_bytes() // 2, bucket_s=600)
        assert done["readings_compacted"] > 0
        still_raw = agent.store.next_batch("readings", "fridge-1", (0, 0), 500, sent_only=True)
        assert still_raw is not None and "seq_last" not in still_raw.records[0]
    finally:
        agent.store.close()


def test_a_small_budget_lets_fewer_readings_out_unconfirmed(tmp_path: Path) -> None:
    from devstack.testkit.edge import edge_config
    from edge.agent import Agent
    from edge.outbox_publisher import READING_BYTES
    from xiaodian.mqtt import MqttSettings, TlsSettings

    tls = TlsSettings(tmp_path / "ca.crt", tmp_path / "c.crt", tmp_path / "c.key")
    mqtt = MqttSettings("127.0.0.1", 1, tls)
    ports = [("fridge-1", tmp_path / "a"), ("fridge-2", tmp_path / "b")]
    agent = Agent(edge_config(tmp_path / "small", mqtt, fridges=ports, disk_budget_mb=0.5))
    try:
        # A quarter of 0.5 MB over two fridges: what cannot be compacted stays well within.
        assert agent.outbox.unconfirmed_cap == 500_000 // 4 // READING_BYTES // 2
    finally:
        agent.store.close()
    agent = Agent(edge_config(tmp_path / "large", mqtt, fridges=ports))
    try:
        assert agent.outbox.unconfirmed_cap == 5000  # the configured maximum
    finally:
        agent.store.close()


def test_pending_rows_of_an_older_database_count_as_sent(tmp_path: Path) -> None:
    """A database from before the `sent` mark: its pending readings may be at the cloud
    already, so they are never compacted; new ones are."""
    import sqlite3

    db = tmp_path / "edge.sqlite3"
    store = EdgeStore(db)
    store.add(_reading(ms) for ms in range(10_000, 600_001, 10_000))  # 60 pending
    store.close()
    con = sqlite3.connect(db)  # back to the old outbox, without the column
    con.executescript(
        "CREATE TABLE old AS SELECT kind, device, boot, seq, published_at FROM outbox;"
        "DROP TABLE outbox; CREATE TABLE outbox (kind TEXT NOT NULL, device TEXT NOT NULL,"
        " boot INTEGER NOT NULL, seq INTEGER NOT NULL, published_at REAL,"
        " PRIMARY KEY (kind, device, boot, seq)) WITHOUT ROWID;"
        "INSERT INTO outbox SELECT * FROM old; DROP TABLE old;")
    con.close()
    store = EdgeStore(db)
    assert store.sent_unconfirmed("readings", "fridge-1") == 60
    store.add(_reading(ms) for ms in range(610_000, 1_200_001, 10_000))  # 60 new ones
    assert store.sent_unconfirmed("readings", "fridge-1") == 60
    store.close()


def test_between_two_checks_the_wal_stays_near_a_sixteenth_of_the_budget(
    tmp_path: Path,
) -> None:
    """Many small commits (a drain: PUBACKs, receipts) between two checks: SQLite's own
    checkpoint would let the WAL reach 4 MB and keep the file that size."""
    db = tmp_path / "edge.sqlite3"
    store = EdgeStore(db)
    budget = 1_000_000
    store.enforce_budget(budget)
    wal = db.with_name(db.name + "-wal")
    largest = 0
    for ms in range(10_000, 4_000_001, 10_000):  # 400 commits
        store.add([_reading(ms)])
        largest = max(largest, wal.stat().st_size)
    # A sixteenth of the budget, plus the commit that crossed it.
    assert largest <= budget // 16 + 16 * 4096, largest
    store.close()
