"""A barcode scanner in serial mode: AIM symbology identifier + data + CR/LF per scan.

Mostly EAN-13 (`]E0`, GS1 China prefixes 690–699, valid check digit), some GS1-128
(`]C1`, AI 01 GTIN + 17 expiry + 10 batch) and some QR pickup codes (`]Q1`, `PK1:` + base32;
random, so they look right but do not verify against any store key). Scans happen at
seeded random times; a scanner with no host attached beeps into the void, so scans are
written (and recorded in ground truth) only while a host has the port open.
"""

from __future__ import annotations

import functools
import random

from hw_sim.faults import ScriptedScans
from hw_sim.ptylink import PtyPort
from hw_sim.scenario import ScannerSpec
from hw_sim.truth import TruthWriter

_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def gs1_check_digit(digits: str) -> str:
    """Mod-10 check digit of a GS1 key (EAN-13, GTIN-14) given without its check digit."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def ean13(rng: random.Random) -> str:
    body = str(rng.randint(690, 699)) + "".join(str(rng.randint(0, 9)) for _ in range(9))
    return body + gs1_check_digit(body)


def gs1_128(rng: random.Random) -> str:
    gtin13 = ean13(rng)[:-1]
    gtin14 = "0" + gtin13 + gs1_check_digit("0" + gtin13)
    expiry = f"{rng.randint(25, 27):02d}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    batch = "".join(
        rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(rng.randint(3, 8))
    )
    # AI 10 is variable-length, so it goes last: no FNC1 separator needed.
    return "01" + gtin14 + "17" + expiry + "10" + batch


def pickup_code(rng: random.Random) -> str:
    return "PK1:" + "".join(rng.choice(_BASE32) for _ in range(32))


def scan_line(rng: random.Random) -> str:
    """One scan without the CR/LF suffix."""
    pick = rng.random()
    if pick < 0.75:
        return "]E0" + ean13(rng)
    if pick < 0.9:
        return "]C1" + gs1_128(rng)
    return "]Q1" + pickup_code(rng)


class ScanSchedule:
    """Poisson scan times at `scans_per_hour`; pure, advanced with simulated seconds."""

    def __init__(self, rng: random.Random, scans_per_hour: float) -> None:
        self._rng = rng
        self.rate_per_s = scans_per_hour / 3600.0
        self._next = self._gap(0.0)

    def _gap(self, now_s: float) -> float:
        if self.rate_per_s <= 0:
            return float("inf")
        return now_s + self._rng.expovariate(self.rate_per_s)

    def due(self, now_s: float) -> list[str]:
        lines: list[str] = []
        while self._next <= now_s:
            lines.append(scan_line(self._rng))
            self._next = self._gap(self._next)
        return lines


class ScannerDevice:
    def __init__(self, spec: ScannerSpec, seed: int, port: PtyPort, truth: TruthWriter) -> None:
        self.spec = spec
        self.port = port
        self.truth = truth
        self.schedule = ScanSchedule(random.Random(f"{seed}/{spec.id}/scans"), spec.scans_per_hour)
        self.scripted = ScriptedScans(spec.scans)
        self.time_s = 0.0
        self.lost_scans = 0  # scanned with no host listening, or the buffer full

    @property
    def id(self) -> str:
        return self.spec.id

    def service(self) -> None:
        self.port.service()  # host bytes (a scanner ignores them) and hang-up tracking

    def step(self, dt_s: float) -> None:
        self.time_s += dt_s
        for line in self.schedule.due(self.time_s):
            self._scan(line, scripted=False)
        for line in self.scripted.due(self.time_s):
            self._scan(line, scripted=True)

    def _scan(self, line: str, scripted: bool) -> None:
        data = (line + "\r\n").encode("ascii")
        if not self.port.send(data, functools.partial(self._delivered, line, scripted)):
            self.lost_scans += 1

    def _delivered(self, line: str, scripted: bool) -> None:
        if scripted:
            self.truth.record(self.id, "scan", line=line, scripted=True)
        else:
            self.truth.record(self.id, "scan", line=line)
