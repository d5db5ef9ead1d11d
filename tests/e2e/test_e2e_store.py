"""A whole store as real processes through the same command a user runs: `xiaodian demo`.

Mosquitto (TLS, per-client certificates, ACL), the cloud gateway, the simulator on
pseudo-terminals and the edge agent all run as their own processes. Afterwards every
reading the simulator wrote to the wire must be in the cloud database exactly once, with the
same frame sequence number and values: checked here straight from the files, not only
through the demo's own summary.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.testkit.wait import wait
from xiaodian.i18n import translator

pytestmark = pytest.mark.e2e


def _truth(path: Path) -> dict[tuple[str, int], tuple[int, list[list[object]]]]:
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "temp":
            out[(rec["device"], rec["dev_ms"])] = (rec["fseq"], rec["probes"])
    return out


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(text.encode() in a for a in args):
            found.append(b" ".join(args).decode(errors="replace"))
    return found


def test_demo_delivers_every_reading_exactly_once(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "xiaodian",
            "demo",
            "--for",
            "15",
            "--speed",
            "120",
            "--json",
            "--workdir",
            str(workdir),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["ok"] and summary["settled"]
    assert set(summary["fridges"]) == {"fridge-1", "fridge-2"}
    for fridge, figures in summary["fridges"].items():
        # 15 s at x120 with a reading every 10 simulated seconds: about 180 per fridge.
        assert figures["emitted"] > 100, (fridge, figures)
        assert figures["missing"] == figures["duplicated"] == figures["altered"] == 0

    # Independent check, straight from the ground truth and the cloud database.
    sent = _truth(workdir / "run" / "truth.jsonl")
    con = sqlite3.connect(workdir / "cloud" / "cloud.sqlite3")
    rows = con.execute(
        "SELECT device, dev_ms, fseq, probes, boot, seq FROM readings WHERE store='store-001'"
    ).fetchall()
    con.close()
    got = {(d, ms): (f, json.loads(p)) for d, ms, f, p, _b, _s in rows}
    assert len(got) == len(rows), "a reading is stored twice in the cloud"
    assert got == sent
    # Per-stream sequence numbers are contiguous: nothing skipped between edge and cloud.
    for device in ("fridge-1", "fridge-2"):
        seqs = sorted(s for d, _ms, _f, _p, _b, s in rows if d == device)
        assert seqs == list(range(1, len(seqs) + 1))

    # Events made it too (door, compressor, hello, link, scans), and nothing is parked.
    con = sqlite3.connect(workdir / "cloud" / "cloud.sqlite3")
    types = {t for (t,) in con.execute("SELECT DISTINCT type FROM events")}
    parked = con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    con.close()
    assert {"hello", "link"} <= types
    assert parked == 0
    # The owner's inbox: where to look and how to log in, and it holds exactly what the
    # cloud delivered to it (a notice is marked delivered only after the inbox answered 2xx;
    # one may be in flight when the demo stops, so received ⊇ marked delivered).
    assert summary["owner"]["inbox_url"] == summary["inbox"]["url"] != ""
    assert summary["owner"]["login_url"].endswith("/login?next=/owner")
    assert summary["owner"]["user"] == "owner" and summary["owner"]["password"]
    # The supply operator the banner names can log in to the /supply page it prints.
    assert summary["owner"]["supply_page"].endswith("/supply")
    con = sqlite3.connect(workdir / "cloud" / "cloud.sqlite3")
    (operator,) = con.execute("SELECT role, password IS NOT NULL FROM users WHERE username = ?",
                              (summary["owner"]["operator"],)).fetchall()
    con.close()
    assert operator == ("operator", 1)
    assert summary["inbox"]["refused"] == 0
    con = sqlite3.connect(workdir / "cloud" / "cloud.sqlite3")
    sent = {i: (kind, f"store-001/{alert}") for i, kind, alert in con.execute(
        "SELECT id, kind, alert_id FROM alert_notifications WHERE contact = 'owner'"
        " AND channel = 'webhook' AND state = 'delivered'")}
    made = {i for (i,) in con.execute("SELECT id FROM alert_notifications")}
    con.close()
    received = {n["delivery"]: (n["kind"], n["alert"]) for n in summary["inbox"]["notices"]}
    assert len(received) == len(summary["inbox"]["notices"])
    assert set(received) <= made
    assert {i: received.get(i) for i in sent} == sent
    # Ctrl-C or --for: nothing is left running.
    assert _processes_mentioning(str(workdir)) == []


def test_sigterm_stops_the_demo_and_everything_it_started(tmp_path: Path) -> None:
    import signal

    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "xiaodian", "demo", "--speed", "60", "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        stdout = proc.stdout
        # The banner: everything is running.
        # Chinese unless --lang en: the banner's last line.
        done = translator("zh_CN").gettext("Ctrl-C stops everything.")
        wait(lambda: stdout.readline().startswith(done), 120, "the demo to start", interval=0)
        assert len(_processes_mentioning(str(workdir))) >= 4  # broker, cloud, sim, edge
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert translator("zh_CN").gettext("all delivered exactly once") in out
    assert _processes_mentioning(str(workdir)) == []
