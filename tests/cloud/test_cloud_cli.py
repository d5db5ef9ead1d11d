"""`xiaodian cloud readings` and `cloud dead-letters`, through the real argument parser."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from cloud_gateway import cli
from cloud_gateway.db import Database
from cloud_gateway.ingest import ingest
from devstack.testkit.cli import run_commands
from devstack.testkit.pg_server import db_toml
from xiaodian.wire.payloads import batch_payload, reading_record


def run(argv: list[str]) -> int:
    return run_commands(argv, cli.register)


@pytest.fixture
def db_path(db_target: Path | str) -> Path | str:
    """A small database, SQLite file or PostgreSQL URL (`--db` takes either)."""
    path = db_target
    with Database.open(path) as db:
        for boot in (2, 1):
            records = [reading_record(s, s, 10 * s, 1000.0 + s, s % 2 == 0,
                                      [(0, "ok", 1.5), (1, "crc", None)]) for s in (2, 1)]
            ingest(db, "xd/v1/store-001/telemetry",
                   batch_payload("readings", "store-001", "fridge-1", boot, records), "w", 5.0)
        ingest(db, "xd/v1/store-001/telemetry", b"[1, 2", "w", 6.0)
    return path


def test_readings_csv(db_path: Path | str, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(["cloud", "readings", "--db", str(db_path), "--store", "store-001",
                "--fridge", "fridge-1", "--format", "csv"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("store,device,boot,seq,fseq,dev_ms,wall,synced,air_c,"
                                   "product_c,wall_corrected,time_method")
    rows = list(csv.reader(io.StringIO(out)))[1:]
    assert [(r[2], r[3]) for r in rows] == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    assert rows[0][:10] == ["store-001", "fridge-1", "1", "1", "1", "10", "1001.0", "false",
                            "1.5", ""]


def test_readings_jsonl_via_config(db_path: Path | str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cloud.toml"
    name = Path(db_path.name) if isinstance(db_path, Path) else db_path  # relative to the file
    config.write_text(f'[cloud]\n{db_toml(name)}worker_id = "w"\n'
                      '[mqtt]\nhost = "localhost"\nport = 8883\n'
                      '[mqtt.tls]\nca = "ca.pem"\ncert = "c.pem"\nkey = "c.key"\n')
    code = run(["cloud", "readings", "--config", str(config), "--store", "store-001",
                "--fridge", "fridge-1", "--format", "jsonl"])
    assert code == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 4 and lines[-1]["boot"] == 2 and lines[-1]["synced"] is True
    assert lines[0]["product_c"] is None and lines[0]["probes"][1] == [1, "crc", None]


def test_unknown_fridge_and_missing_database_are_errors(
    db_path: Path | str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["cloud", "readings", "--db", str(db_path), "--store", "store-001",
                "--fridge", "fridge-9"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "no readings for store 'store-001' fridge 'fridge-9'" in (
        captured.err)
    missing = tmp_path / "nope.sqlite"
    assert run(["cloud", "dead-letters", "--db", str(missing)]) == 1
    assert f"cannot open database {missing}" in capsys.readouterr().err
    assert not missing.exists()  # reading never creates a database


def test_dead_letters_listing(db_path: Path | str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["cloud", "dead-letters", "--db", str(db_path)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    fields = line.split("\t")
    assert fields[2:4] == ["w", "xd/v1/store-001/telemetry"]
    assert fields[4].startswith("payload is not JSON") and fields[5] == "[1, 2"
    assert run(["cloud", "dead-letters", "--db", str(db_path), "--format", "jsonl"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["payload"] == "[1, 2" and record["worker"] == "w"


def test_gaps_open_by_default_all_on_request(db_path: Path | str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with Database.open(db_path) as db:  # seq 3 and 4 skipped, then 3 arrives late
        for seqs in ([5], [3]):
            records = [reading_record(s, s, 10 * s, 1000.0 + s, True, [(0, "ok", 1.5)])
                       for s in seqs]
            ingest(db, "xd/v1/store-001/telemetry",
                   batch_payload("readings", "store-001", "fridge-1", 1, records), "w", 7.0)
    assert run(["cloud", "gaps", "--db", str(db_path)]) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split("\t") == ["state", "store", "device", "kind", "boot",
                                  "first_missing_seq", "last_missing_seq", "missing",
                                  "detected_at", "filled_at"]
    assert line.split("\t") == ["open", "store-001", "fridge-1", "readings", "1", "4", "4", "1",
                                "7.0", ""]
    assert run(["cloud", "gaps", "--db", str(db_path), "--all", "--store", "store-001",
                "--format", "jsonl"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(r["state"], r["first_missing_seq"], r["last_missing_seq"]) for r in rows] == [
        ("filled", 3, 3), ("open", 4, 4)]
    # Nothing to list: it says so (not a bare header), in Chinese unless asked otherwise.
    assert run(["cloud", "gaps", "--db", str(db_path), "--store", "store-002"]) == 0
    assert capsys.readouterr().out == "无：没有未补齐的数据缺口。\n"
    assert run(["cloud", "gaps", "--db", str(db_path), "--store", "store-002", "--all"]) == 0
    assert capsys.readouterr().out == "无：没有数据缺口。\n"
    assert run(["cloud", "gaps", "--db", str(db_path), "--store", "store-002",
                "--format", "jsonl"]) == 0
    assert capsys.readouterr().out == ""  # a machine format stays empty


def test_empty_listings_say_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.sqlite"
    Database.open(empty).close()
    assert run(["cloud", "dead-letters", "--db", str(empty)]) == 0
    assert capsys.readouterr().out == "无：没有被搁置的消息。\n"
    monkeypatch.setenv("XIAODIAN_LANG", "en")
    assert run(["cloud", "dead-letters", "--db", str(empty)]) == 0
    assert capsys.readouterr().out == "None: no parked messages.\n"
    assert run(["cloud", "stock", "store-001", "--db", str(empty)]) == 0
    assert capsys.readouterr().out == "None: no stock recorded for this store.\n"


def test_db_and_config_are_mutually_exclusive(db_path: Path | str) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["cloud", "dead-letters", "--db", str(db_path), "--config", "x.toml"])
    assert exc.value.code == 2
