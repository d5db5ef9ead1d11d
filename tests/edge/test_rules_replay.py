"""Traces (CSV and JSON lines) and `xiaodian rules replay`, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.rules import RuleEngine, TraceError, replay
from edge.rules.trace import parse_csv, parse_jsonl

ROOT = Path(__file__).resolve().parents[2]


def _csv_trace() -> str:
    """A fridge that warms to 8.6 °C after 1 h and a door left open for 6 min."""
    lines = [
        "# fridge-1, one reading a minute",
        "timestamp,fridge,air_c,product_c,air_status,product_status,door,compressor,mains,defrost",
    ]
    for m in range(0, 150):
        product = 3.0 if m < 60 else min(8.6, 3.0 + 0.5 * (m - 60))
        door = "open" if 20 <= m < 26 else "closed"
        stamp = (
            f"2025-06-01T02:{m:02d}:00+08:00"
            if m < 60
            else f"2025-06-01T0{2 + m // 60}:{m % 60:02d}:00+08:00"
        )
        lines.append(f"{stamp},fridge-1,{product + 1:.2f},{product:.2f},ok,ok,{door},,on,")
    return "\n".join(lines) + "\n"


def _replay_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xiaodian", "rules", "replay", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_replay_cli_prints_the_lifecycle_as_json_lines(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(_csv_trace(), encoding="utf-8")
    done = _replay_cli(str(trace))
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    steps = [(o["rule"], o["change"], o["severity"]) for o in out]
    assert steps == [
        ("door", "raised", "warning"),
        ("door", "updated", "warning"),
        ("door", "cleared", "warning"),
        ("hot", "raised", "critical"),
        ("warm", "raised", "warning"),
    ]
    door = out[0]
    assert door["at"] == "2025-05-31T18:23:00Z" and door["audience"] == "terminal"
    hot = out[3]
    assert hot["message"] == "product 8.6 °C, above 8 °C for 15 min"
    assert hot["started_at"] == "2025-05-31T19:11:00Z" and hot["duration_s"] == 900
    assert hot["data"] == {"reason": "hot_sustained", "cause": "sustained", "value_c": 8.6,
                           "limit_c": 8.0, "for_s": 900.0}


def test_replay_cli_with_a_rules_file_and_jsonl(tmp_path: Path) -> None:
    rows = [
        {"timestamp": 60 * m, "fridge": "f", "product_c": 3.0 if m < 10 else 6.0, "door": False}
        for m in range(60)
    ]
    trace = tmp_path / "t.jsonl"
    trace.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    rules = tmp_path / "rules.toml"
    rules.write_text('[[fridges]]\nid = "f"\nwarm_for_min = 20\n', encoding="utf-8")
    done = _replay_cli(str(trace), "--config", str(rules))
    assert done.returncode == 0, done.stderr
    (warm,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (warm["rule"], warm["at"], warm["started_at"]) == ("warm", 1800, 600)
    # Numeric timestamps in, numeric times out.
    rules.write_text("[defaults]\nwarm_for_min = -1\n", encoding="utf-8")
    bad = _replay_cli(str(trace), "--config", str(rules))
    assert bad.returncode == 2 and "defaults.warm_for_min" in bad.stderr


def test_replay_cli_malformed_line_names_the_line(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("timestamp,fridge,air_c\n0,f,3.0\n60,f,warm\n", encoding="utf-8")
    done = _replay_cli(str(trace))
    assert done.returncode == 1 and done.stdout == ""
    assert (
        done.stderr.strip() == f"xiaodian rules replay: {trace} line 3: air_c: not a number: 'warm'"
    )
    missing = _replay_cli(str(tmp_path / "nope.csv"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("timestamp,fridge,air\n", 1, "unknown column 'air'"),
        ("fridge,air_c\n", 1, "'timestamp'"),
        ("timestamp,fridge,door\n0,f,ajar\n", 2, "door: expected one of"),
        ("timestamp,fridge\nyesterday,f\n", 2, "timestamp: not ISO-8601"),
        ("timestamp,fridge,air_c\n0,f\n", 2, "expected 3 fields, got 2"),
        ("timestamp,fridge,air_status\n0,f,broken\n", 2, "air_status: expected one of"),
        ("timestamp,fridge,air_c\n0,f,nan\n", 2, "not a finite number"),
    ],
)
def test_csv_errors(text: str, line: int, problem: str) -> None:
    with pytest.raises(TraceError) as err:
        list(parse_csv(text.splitlines(), "t.csv"))
    assert err.value.line == line and problem in str(err.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"timestamp": 0, "fridge": "f"}\n[1]', "expected a JSON object"),
        ('{"timestamp": 0, "fridge": "f"}\n{"timestamp": 0', "not valid JSON"),
        ('{"timestamp": 0, "fridge": "f"}\n{"timestamp": 0, "fridge": "f", "x": 1}', "'x'"),
        ('{"timestamp": 0, "fridge": "f"}\n{"timestamp": 0, "fridge": "f", "mains": 2}', "mains"),
    ],
)
def test_jsonl_errors(text: str, problem: str) -> None:
    with pytest.raises(TraceError) as err:
        list(parse_jsonl(text.splitlines(), "t.jsonl"))
    assert err.value.line == 2 and problem in str(err.value)


def test_state_columns_become_events_only_when_they_change() -> None:
    text = (
        "timestamp,fridge,product_c,mains\n"
        "0,f,3.0,on\n60,f,3.0,lost\n120,f,3.0,off\n180,f,,\n240,f,3.0,on\n"
    )
    changes = list(replay(parse_csv(text.splitlines()), RuleEngine()))
    assert [(c.rule, c.state, c.at) for c in changes] == [
        ("mains", "raised", 60.0),
        ("mains", "cleared", 240.0),
    ]


def test_a_naive_iso_timestamp_is_utc_and_a_gap_is_monitoring_offline() -> None:
    text = "timestamp,fridge,product_c\n2025-06-01T00:00:00,f,3.0\n2025-06-01T00:30:00Z,f,3.0\n"
    changes = list(replay(parse_csv(text.splitlines()), RuleEngine()))
    assert [(c.rule, c.state, c.at - changes[0].started_at) for c in changes] == [
        ("link", "raised", 600.0),
        ("link", "cleared", 1800.0),
    ]
