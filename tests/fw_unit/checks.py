"""Unit checks of the firmware's pure modules, run by both MicroPython and CPython.

Usage: INTERPRETER checks.py FIRMWARE_DIR CODEC_DIR TMP_DIR; prints one line per check and
then "passed N". No pytest here: the MicroPython unix port has none.
"""

import sys

sys.path.insert(0, sys.argv[2])
sys.path.insert(0, sys.argv[1])
TMP = sys.argv[3]

import codec  # noqa: E402
import lock  # noqa: E402
import probes  # noqa: E402
from clock import Uptime  # noqa: E402
from loadcells import Lane, Reporter  # noqa: E402
from onewire import OneWireError  # noqa: E402
from records import RecordLog, SeqMemory  # noqa: E402
from store import Store  # noqa: E402
from thermostat import Thermostat  # noqa: E402

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def cfg(**over):
    c = {
        "set_point_tenths": 30,
        "hysteresis_tenths": 20,
        "min_off_s": 240,
        "defrost_every_min": 0,
        "defrost_minutes": 25,
        "defrost_heater": False,
        "evaporator_probe": False,
        "defrost_end_tenths": 80,
        "probe_fault_s": 120,
        "fault_on_s": 600,
        "fault_off_s": 900,
    }
    c.update(over)
    return c


@check
def record_log_keeps_until_receipt_and_resends():
    log = RecordLog(4, retransmit_after_ms=30000)
    for seq in (5, 6, 7):
        log.add(seq, codec.TEMP, b"x")
    assert [e.seq for e in log.due(0, False)] == [5, 6, 7]  # never sent: due now
    assert log.due(29999, False) == []
    assert log.receipt([6, 99]) == 1
    assert [e.seq for e in log.due(30000, False)] == [5, 7]
    assert [e.seq for e in log.due(30001, True)] == [5, 7]  # after a HELLO: everything
    assert [e.seq for e in log.entries()] == [5, 7]


@check
def record_log_drops_oldest_when_full():
    dropped = []
    log = RecordLog(3)
    log.on_drop = dropped.append
    for seq in range(5):
        log.add(seq, codec.DOOR, b"")
    assert [e.seq for e in log.entries()] == [2, 3, 4]
    assert [e.seq for e in dropped] == [0, 1] and log.dropped == 2
    log.receipt([3])
    log.add(5, codec.DOOR, b"")
    assert [e.seq for e in log.entries()] == [2, 4, 5] and log.dropped == 2


@check
def record_log_resend_limit_and_compaction():
    log = RecordLog(2048)
    for seq in range(100):
        log.add(seq, codec.TEMP, b"")
    assert len(log.due(0, False, limit=32)) == 32
    log.receipt(list(range(90)))
    assert len(log) == 10 and log.entries()[0].seq == 90


@check
def seq_memory_remembers_last_eight():
    m = SeqMemory(8)
    for s in range(10):
        m.remember(s)
    assert not m.seen(0) and not m.seen(1) and m.seen(2) and m.seen(9)
    m.forget_all()
    assert not m.seen(9)


@check
def thermostat_band_and_min_off_time():
    t = Thermostat(cfg(), 0)
    assert t.step(0, 3.9375) == []  # inside the band (2..4 °C): stays off
    assert t.step(1000, 4.0) == [("compressor", True, codec.COMPRESSOR_THERMOSTAT)]
    assert t.step(2000, 2.5) == []
    assert t.step(3000, 2.0) == [("compressor", False, codec.COMPRESSOR_THERMOSTAT)]
    assert t.step(60000, 5.0) == []  # demand, but held by the minimum off time
    assert t.step(243000, 5.0) == [("compressor", True, codec.COMPRESSOR_MIN_OFF_TIME)]


@check
def thermostat_defrost_schedule_and_command():
    t = Thermostat(cfg(defrost_every_min=60, defrost_minutes=20, defrost_heater=True), 0)
    t.step(0, 6.0)
    assert t.compressor_on
    ev = t.step(3600000, 6.0)
    assert ev == [
        ("defrost", True, codec.DEFROST_SCHEDULE),
        ("compressor", False, codec.COMPRESSOR_DEFROST_START),
    ]
    assert t.heater_on and t.step(3601000, 9.0) == []  # no cooling while defrosting
    assert t.defrost_now(3602000, 5) is None  # already defrosting: busy
    ev = t.step(3600000 + 1200000, 9.0)
    assert ev[0] == ("defrost", False, codec.DEFROST_TIMEOUT) and not t.heater_on
    assert ev[1] == ("compressor", True, codec.COMPRESSOR_DEFROST_END)
    ev = t.defrost_now(5000000, 2)
    assert ev[0] == ("defrost", True, codec.DEFROST_COMMAND)
    assert t.step(5000000 + 120000, 9.0)[0] == ("defrost", False, codec.DEFROST_TIMEOUT)


@check
def thermostat_defrost_ends_on_the_evaporator_probe():
    t = Thermostat(cfg(defrost_minutes=20, defrost_heater=True, evaporator_probe=True), 0)
    t.defrost_now(1000, 0)
    assert t.step(2000, 6.0, True, 7.9375) == [] and t.heater_on  # short of 8.0 °C
    assert t.step(3000, 6.0, True, None) == []  # no usable reading: the timer decides
    ev = t.step(4000, 6.0, True, 8.0)
    assert ev[0] == ("defrost", False, codec.DEFROST_TEMPERATURE) and not t.heater_on
    assert t.defrost_reason == codec.DEFROST_TEMPERATURE
    t.defrost_now(10000, 1)
    ev = t.step(70000, 6.0, True, None)  # probe lost: ends on its timer, heater off
    assert ev[0] == ("defrost", False, codec.DEFROST_TIMEOUT) and not t.heater_on
    # Without the probe fitted a warm reading is ignored, as before.
    t = Thermostat(cfg(defrost_minutes=20), 0)
    t.defrost_now(1000, 1)
    assert t.step(2000, 6.0, True, 20.0) == [] and t.defrosting


@check
def thermostat_mains_loss_and_restore():
    t = Thermostat(cfg(), 0)
    t.step(0, 6.0)
    assert t.step(1000, 6.0, mains=False) == [("compressor", False, codec.COMPRESSOR_POWER)]
    assert t.step(500000, 9.0, mains=False) == []  # nothing starts on the backup supply
    assert t.step(501000, 9.0, mains=True) == [("compressor", True, codec.COMPRESSOR_POWER)]


@check
def thermostat_duty_cycle_without_air_probe():
    t = Thermostat(cfg(probe_fault_s=60, fault_on_s=600, fault_off_s=900), 0)
    t.step(0, 3.0)
    assert t.step(59000, None) == []
    assert t.step(60000, None) == [("compressor", True, codec.COMPRESSOR_FAULT)]
    assert t.step(660000, None) == [("compressor", False, codec.COMPRESSOR_FAULT)]
    assert t.step(1560000, None) == [("compressor", True, codec.COMPRESSOR_FAULT)]
    assert t.step(1561000, 1.0) == [("compressor", False, codec.COMPRESSOR_THERMOSTAT)]


@check
def store_persists_and_rejects_bad_values():
    d = TMP
    s = Store(d)
    assert s.load()["set_point_tenths"] == 30 and s.count_boot() == 1
    assert s.set("set_point_tenths", 45)
    assert not s.set("set_point_tenths", 999) and not s.set("defrost_heater", 1)
    s2 = Store(d)
    v = s2.load()
    assert v["set_point_tenths"] == 45 and v["boot_count"] == 1 and s2.errors == 0
    assert s2.count_boot() == 2
    with open(d + "/config.json", "w") as f:
        f.write('{"set_point_tenths": "warm", "min_off_s": 60}')
    s3 = Store(d)
    v = s3.load()
    assert v["set_point_tenths"] == 30 and v["min_off_s"] == 60 and s3.errors == 1
    with open(d + "/config.json", "w") as f:
        f.write("{not json")
    assert Store(d).load()["min_off_s"] == 240  # corrupt file: defaults, still running


@check
def door_debounce_and_lock():
    door = lock.Door(0, False)
    assert door.sample(100, True) is None  # one poll is a bounce
    assert door.sample(200, False) is None
    assert door.sample(300, True) is None
    assert door.sample(400, True) == 400 and door.is_open
    assert door.sample(900, False) is None and door.sample(1000, False) == 600
    lk = lock.Lock()
    assert lk.locked and lk.reason == codec.LOCK_BOOT
    lk.unlock(0, 10)
    assert lk.reason == codec.LOCK_COMMAND
    assert lk.update(5000, False) is None and not lk.locked
    assert lk.update(6000, True) is None  # opened
    assert lk.update(7000, False) == codec.LOCK_DOOR_CLOSED and lk.locked  # closed again
    assert lk.update(8000, False) is None  # already locked: no second change
    lk.unlock(8000, 10)
    assert lk.update(18000, False) == codec.LOCK_TIMEOUT and lk.locked  # never opened
    lk.unlock(20000, 1)
    assert lk.update(22000, True) is None and not lk.locked  # open at the timeout: wait
    assert lk.update(23000, False) == codec.LOCK_DOOR_CLOSED


class Cell:
    def __init__(self):
        self.raw = []

    def is_ready(self):
        return bool(self.raw)

    def read(self):
        return self.raw.pop(0)


@check
def load_cell_tare_calibrate_stable():
    cell = Cell()
    lane = Lane(cell)
    assert not lane.poll() and lane.grams() is None
    cell.raw = [1000] * 5
    while lane.poll():
        pass
    assert lane.tare() and lane.offset == 1000
    cell.raw = [5000, 5000, 5008, 4992, 5000]
    while lane.poll():
        pass
    assert lane.calibrate(500) and abs(lane.scale - 8.0) < 1e-9
    assert abs(lane.grams() - 500) < 1e-6 and lane.stable()
    cell.raw = [9000]
    lane.poll()
    assert not lane.stable()
    assert not lane.calibrate(0)


@check
def lane_reports_only_real_changes():
    r = Reporter(deadband_g=5, boot_wait_ms=2000)
    assert not r.due(100, [(0, False)], False)  # cells still filling their window
    assert r.due(600, [(1000, True)], True)  # once after boot
    assert not r.due(700, [(1000, True)], True)
    assert not r.due(800, [(1005, True)], True)  # within the deadband
    assert r.due(900, [(1006, True)], True) and r.last == [(1006, True)]
    assert r.due(1000, [(700, False)], True)  # someone is taking an item: settling
    assert not r.due(1100, [(500, False)], True)  # grams of a settling lane do not count
    assert r.due(1200, [(500, True)], True)  # settled at the new weight
    late = Reporter(boot_wait_ms=2000)
    assert not late.due(1999, [(0, False)], False)
    assert late.due(2000, [(0, False)], False)  # a dead cell still gets its boot report


@check
def uptime_survives_tick_wrap():
    ticks = [0x3FFFFF00]

    def diff(a, b):
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000

    up = Uptime(lambda: ticks[0], diff)
    ticks[0] = (0x3FFFFF00 + 0x200) & 0x3FFFFFFF  # wrapped
    assert up.now() == 0x200


class Ds:
    def __init__(self, values):
        self.values = values
        self.present = True

    def convert_temp(self):
        if not self.present:
            raise OneWireError()

    def read_temp(self, rom):
        v = self.values[rom]
        if isinstance(v, BaseException):
            raise v
        return v


@check
def probe_statuses():
    ds = Ds({b"a": 3.0625, b"b": 85.0, b"c": OneWireError(), b"d": Exception("CRC error")})
    bus = probes.ProbeBus(ds, [b"a", b"b", b"c", b"d"])
    bus.start()
    got = bus.read()
    assert got == [
        (0, codec.STATUS_OK, 49),
        (1, codec.STATUS_SUSPECT, 1360),
        (2, codec.STATUS_MISSING, 0),
        (3, codec.STATUS_CRC, 0),
    ]
    assert bus.errors == 2
    ds.present = False
    bus.start()
    assert [s for _, s, _ in bus.read()] == [codec.STATUS_MISSING] * 4


@check
def probe_assignment_keeps_numbers():
    a, b, c = b"\x28\x01", b"\x28\x02", b"\x28\x03"
    assert probes.assign([b, a], [], 2) == [a, b]
    saved = [probes.rom_hex(a), probes.rom_hex(b)]
    assert probes.assign([b], saved, 2) == [a, b]  # a unplugged: keeps number 0
    assert probes.assign([c, b], [probes.rom_hex(b)], 2) == [b, c]


passed = 0
for fn in CHECKS:
    fn()
    passed += 1
    print("ok", fn.__name__)
print("passed", passed)
