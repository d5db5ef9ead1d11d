"""Checks on the firmware source itself: MicroPython stubs type-check, mpy-cross compile,
and its unit checks under the real MicroPython unix port as well as CPython."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware_bridge" / "firmware"
CODEC = ROOT / "firmware_bridge" / "codec.py"
STUBS = ROOT / ".fw-stubs"
UNIT = Path(__file__).resolve().parents[1] / "fw_unit"
BIN = Path(sys.executable).parent
MICROPYTHON = os.environ.get("MICROPYTHON") or shutil.which("micropython", path=str(BIN))
MPY_CROSS = shutil.which("mpy-cross", path=str(BIN)) or shutil.which("mpy-cross")
SOURCES = sorted(FIRMWARE.glob("*.py"))


def board_copy(tmp_path: Path) -> Path:
    """The files as a board's filesystem holds them: flat, codec.py beside main.py."""
    d = tmp_path / "board"
    d.mkdir()
    for src in [*SOURCES, CODEC, *(CODEC.parent / n for n in ("fwmsg.py", "fwsig.py",
                                                               "edverify.py"))]:
        shutil.copy(src, d / src.name)
    return d


def test_firmware_has_the_expected_modules() -> None:
    names = {p.stem for p in SOURCES}
    assert {"main", "controller", "thermostat", "probes", "link", "store", "loadcells"} <= names
    assert {"lock", "supervisor", "records", "board"} <= names


@pytest.mark.skipif(not (STUBS / "machine.pyi").exists(), reason="run scripts/bootstrap.sh")
def test_firmware_type_checks_against_micropython_stubs(tmp_path: Path) -> None:
    board = board_copy(tmp_path)
    run = subprocess.run(
        [
            str(BIN / "mypy"),
            "--config-file",
            str(UNIT / "mypy-firmware.ini"),
            "--custom-typeshed-dir",
            str(STUBS),
            "--cache-dir",
            str(tmp_path / "cache"),
            ".",
        ],
        cwd=board,
        env={**os.environ, "MYPYPATH": str(STUBS)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"no issues found in {len(SOURCES) + 4} source files" in run.stdout


@pytest.mark.skipif(MPY_CROSS is None, reason="mpy-cross not installed (test extras)")
def test_every_firmware_file_compiles_with_mpy_cross(tmp_path: Path) -> None:
    assert MPY_CROSS is not None
    for src in [*SOURCES, CODEC]:
        out = tmp_path / (src.stem + ".mpy")
        run = subprocess.run(
            [MPY_CROSS, "-o", str(out), str(src)], capture_output=True, text=True, check=False
        )
        assert run.returncode == 0, f"{src.name}: {run.stderr}"
        assert out.stat().st_size > 0


@pytest.mark.skipif(MPY_CROSS is None, reason="mpy-cross not installed (test extras)")
def test_mpy_cross_rejects_what_micropython_cannot_run(tmp_path: Path) -> None:
    # The check is only worth having if it fails: `match` is fine for CPython 3.11, but
    # MicroPython has no such statement.
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return 2\n")
    compile(bad.read_text(), str(bad), "exec")
    assert MPY_CROSS is not None
    run = subprocess.run(
        [MPY_CROSS, "-o", str(tmp_path / "bad.mpy"), str(bad)], capture_output=True, check=False
    )
    assert run.returncode != 0


@pytest.mark.parametrize("interpreter", ["micropython", "cpython"])
def test_firmware_unit_checks(interpreter: str, tmp_path: Path) -> None:
    exe = MICROPYTHON if interpreter == "micropython" else sys.executable
    if exe is None:
        pytest.skip("no micropython binary (set MICROPYTHON)")
    run = subprocess.run(
        [exe, str(UNIT / "checks.py"), str(FIRMWARE), str(CODEC.parent), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip().splitlines()[-1] == "passed 16"
