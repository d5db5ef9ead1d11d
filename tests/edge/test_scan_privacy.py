"""A scanned pickup code is a bearer token for someone's order: it is acted on, never kept."""

from __future__ import annotations

from pathlib import Path

from edge.interpret import from_scan_line
from edge.store import EdgeStore

CODE = "PK1:AAAAAAAAAAAADGZGVTQQDSFJIMAI4V6RH6VVJWEFRQ7Q5OP7"


def test_the_scan_event_says_a_code_was_scanned_and_only_memory_holds_it() -> None:
    ev = from_scan_line("scanner-1", f"]Q1{CODE}".encode(), 1.7e9, True)
    assert ev.transient == f"]Q1{CODE}"
    assert ev.data["pickup_code"] is True and ev.data["symbology"] == "Q1"
    assert CODE not in repr(ev.data) and "AAAAAAAA" not in repr(ev)


def test_an_ordinary_scan_is_kept_whole() -> None:
    ev = from_scan_line("scanner-1", b"]E06901234567892", 1.7e9, True)
    assert ev.transient is None and ev.data["data"] == "6901234567892"
    assert "pickup_code" not in ev.data


def test_neither_the_edge_database_nor_the_outbox_holds_the_code(tmp_path: Path) -> None:
    path = tmp_path / "edge.sqlite3"
    store = EdgeStore(path)
    added = store.add([from_scan_line("scanner-1", f"]Q1{CODE}".encode(), 1.7e9, True)])
    assert added.stored == 1 and added.fresh[0].transient == f"]Q1{CODE}"  # for the counter
    store.close()
    assert CODE.encode() not in path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or CODE.encode() not in wal.read_bytes()
