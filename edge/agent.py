"""The edge agent's composition root: serial readers → SQLite → MQTT, in one owning thread.

The main thread is the only one that touches SQLite and the MQTT client. Reader threads
hand it records through a bounded queue; it commits them (one transaction per drain), then
publishes pending outbox rows, and rows leave the outbox when the cloud's receipts name
them (`outbox_publisher`).

One piece on purpose, though about 500 lines: `Agent` is that single owning thread, and
its steps (drain, publish, acknowledge, budget, retail, commands, vitals, tap, status) share
what it owns and its counters; the work each step does is already in its own module
(`store`, `outbox_publisher`, `uplink`, `alerting`, `retail`, `commands`, `kiosk`), and
what is left here is the wiring.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from edge import firmware_push, interpret, self_update, time_anchors
from edge.alerting import Alerting, as_event
from edge.artefact_update import UpdateSetup
from edge.commands import CommandHandler
from edge.commands import load as load_commands
from edge.config import EdgeConfig
from edge.config_hash import config_hash
from edge.health_file import HealthFile
from edge.kiosk import Kiosk
from edge.metrics import MetricsServer
from edge.metrics import families as metric_families
from edge.outbox_publisher import OutboxPublisher
from edge.retail.service import Retail, local_date
from edge.rules.alerts import AlertChange
from edge.rules.config import RulesConfig
from edge.rules.engine import RuleEngine
from edge.serial_link import FridgeReader, PortReader, ScannerReader
from edge.service_notify import ServiceNotify
from edge.store import EdgeStore, NewEvent, NewReading
from edge.tap import Tap
from edge.uplink import Uplink
from edge.vitals_job import VitalsJob
from edge.wallclock import WallClock
from firmware_bridge.tap import tap_path
from xiaodian import __version__
from xiaodian.config import load_config
from xiaodian.i18n import N_, Message
from xiaodian.metrics_text import render as render_metrics
from xiaodian.pki.keys import load_command_public_key
from xiaodian.wire.payloads import PayloadError
from xiaodian.wire.retail import parse_downlink

log = logging.getLogger(__name__)

QUEUE_BOUND = 10_000
DRAIN_MAX = 2_000  # records per transaction
STATUS_EVERY_S = 5.0
PRUNE_EVERY_S = 3600.0
STALL_S = 60.0  # a reader silent for this long (not even a timeout) is reported stuck


class Agent:
    def __init__(
        self,
        config: EdgeConfig,
        *,
        clock: WallClock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock or WallClock()
        self.monotonic = monotonic
        self.stop_event = threading.Event()
        self.queue: queue.Queue[interpret.Item] = queue.Queue(maxsize=QUEUE_BOUND)
        self.store = EdgeStore(config.edge.db_path)
        self.fridge_ids = frozenset(f.id for f in config.fridges)
        # The terminal's keep-alive is its own ([edge] keepalive_s): tuned for mobile NATs.
        self.uplink = Uplink(
            dataclasses.replace(config.mqtt, keepalive=config.edge.keepalive_s),
            config.edge.store_id,
            self.store.boot,
            config.device_ids,
            __version__,
            monotonic=monotonic,
            retail=True,
            config_hash=config_hash(config),
        )
        # Sniffs and captures read through this, never by opening a port (edge/tap.py).
        self.tap = Tap(tap_path(config.edge.data_dir), {
            **{f.id: {"kind": "fridge", "port": str(f.port), "baud": f.baudrate}
               for f in config.fridges},
            **{s.id: {"kind": "scanner", "port": str(s.port), "baud": s.baudrate}
               for s in config.scanners}})
        self.readers: list[PortReader] = [
            FridgeReader(f.id, f.port, f.baudrate, self.queue, self.stop_event, self.clock,
                         tap=self.tap)
            for f in config.fridges
        ] + [
            ScannerReader(s.id, s.port, s.baudrate, self.queue, self.stop_event, self.clock,
                          tap=self.tap)
            for s in config.scanners
        ]
        # The outbox → uplink path: cursors, bundles, the unconfirmed cap, receipts.
        self.outbox = OutboxPublisher(self.store, self.uplink, config.edge, self.fridge_ids,
                                      monotonic)
        self.stored = 0
        self.duplicates = 0
        self.alerts_waiting = False  # events (alerts, stock, vitals) to send at once
        self.budget_counters: dict[str, int] = {}
        rules = (load_config(config.edge.rules_file, RulesConfig)
                 if config.edge.rules_file is not None else RulesConfig())
        self.alerting = Alerting(RuleEngine(rules), monotonic)
        self.latest: dict[str, dict[str, object]] = {}
        self.kiosk: Kiosk | None = None
        if config.edge.kiosk_port:
            self.kiosk = Kiosk(config.edge.kiosk_host, config.edge.kiosk_port,
                               allow_remote=config.edge.kiosk_allow_remote, tz=config.edge.tz)
        self.fridge_readers = {r.device: r for r in self.readers if isinstance(r, FridgeReader)}
        # `xiaodian firmware push` asks through the tap socket (edge/firmware_push.py).
        fw_keys = [load_command_public_key(k) for k in config.firmware.keys] \
            if config.firmware else []
        self.tap.ops["firmware"] = lambda conn, request: firmware_push.serve(
            conn, request, self.fridge_readers, fw_keys)
        self.firmware_keys = fw_keys  # and the cloud's `update` commands (edge/commands.py)
        self.status: dict[str, dict[str, object]] = {}
        self.command_handler = self._command_handler()
        tz = config.edge.tz
        self.retail = Retail(self.store, config.edge.store_id, self.clock, config.pickup,
                             config.retail, self.fridge_readers,
                             today=lambda wall: local_date(wall, tz))
        self.retail_seen = -1  # retail.version last published to the counter page
        self.vitals = VitalsJob(self.store, list(self.fridge_readers))
        self.metrics: MetricsServer | None = None
        if config.edge.metrics_port:
            self.metrics = MetricsServer(config.edge.metrics_port)
        self.vitals_retry_at = 0.0
        # systemd: READY once the ports are open, WATCHDOG from the loop (docs/deploy.md).
        self.service = ServiceNotify(monotonic(), __version__)
        # Read by the root helper after a self-update (edge/health_file.py); on tmpfs
        # under systemd (RuntimeDirectory=), never on the terminal's flash.
        self.health = HealthFile(config.health_path(os.environ.get("RUNTIME_DIRECTORY", "")),
                                 __version__, self.clock.read()[0], self.fridge_ids)

    def step_vitals(self) -> None:
        """Each fridge's link counters at the hour's turn, and the vitals of every hour that
        is over (edge/vitals_job.py); sent with the next events pass."""
        wall, synced = self.clock.read()
        self.vitals.mark(wall, lambda f: self.fridge_readers[f].stats())
        if self.monotonic() < self.vitals_retry_at:
            return
        try:
            if self.vitals.run(wall, synced):
                self.alerts_waiting = True
        except Exception:  # health reporting must never stop the cold-chain monitoring
            log.exception("vitals: could not report an hour; trying again in a minute")
            self.vitals_retry_at = self.monotonic() + 60.0

    # ------------------------------------------------------------ steps

    def drain(self) -> int:
        """Commit whatever the readers produced; device status goes to its own table."""
        records: list[NewReading | NewEvent] = []
        statuses: dict[str, dict[str, object]] = {}
        while len(records) < DRAIN_MAX:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, interpret.DeviceStatus):
                statuses.setdefault(item.device, {}).update(item.status)
            else:
                records.append(item)
        if records:
            added = self.store.add(records)
            self.stored += added.stored
            self.duplicates += added.duplicates
            self._record_alerts(self.alerting.feed(added.fresh))
            time_anchors.save(self.store.db, self.alerting.take_new_anchors())
            try:
                self.retail.on_records(added.fresh)  # scans, doors, lane weights, locks
            except Exception:  # a retail fault must never stop the cold-chain monitoring
                log.exception("retail: could not process new records")
            # Only now, with the records committed, may the device forget them.
            for device, keys in added.durable.items():
                reader = self.fridge_readers.get(device)
                if reader is None:
                    continue
                by_boot: dict[int, list[int]] = {}
                for dev_boot, fseq in keys:
                    by_boot.setdefault(dev_boot, []).append(fseq)
                for dev_boot, seqs in by_boot.items():
                    reader.receipt(dev_boot, seqs)
        for device, status in statuses.items():
            self._merge_status(device, status)
        self.health.saw_readings(r.device for r in records if isinstance(r, NewReading))
        for r in records:  # what the terminal's page shows
            view = self.latest.setdefault(r.device, {})
            if isinstance(r, NewReading):
                probes = {i: c for i, _s, c in r.probes}
                view.update(air_c=probes.get(0), product_c=probes.get(1), dev_ms=r.dev_ms)
            elif r.type == "door":
                view["door_open"] = bool(r.data.get("open"))
        return len(records)

    def kiosk_snapshot(self) -> dict[str, object]:
        alerts = [
            {"id": a.id, "fridge": a.fridge, "rule": a.rule, "severity": a.severity,
             "message": a.message, "data": dict(a.data), "since": a.started_at}
            for a in self.alerting.active()
        ]
        fridges = {f: dict(self.latest.get(f, {})) for f in self.fridge_readers}
        return {"fridges": fridges, "alerts": alerts,
                "uplink": {"connected": self.uplink.connected}}

    def counter_snapshot(self) -> dict[str, object]:
        snap = self.kiosk_snapshot()
        return {**self.retail.view(), "alerts": snap["alerts"], "uplink": snap["uplink"]}

    def step_retail(self) -> None:
        """Orders and catalogue from the cloud (PUBACK after commit), the counter page's
        requests, and time (unlock answers, expiring orders)."""
        for msg in self.uplink.take_retail():
            try:
                outcome = self.retail.downlink(parse_downlink(msg.topic, msg.payload))
                log.info("retail: %s", outcome)
            except Exception as exc:
                # Parked with its reason and acknowledged: a message that cannot be stored
                # must not block the ones behind it (PUBACKs go in order). If even parking
                # fails (the disk), it is not acknowledged and comes again.
                if isinstance(exc, PayloadError):
                    log.warning("retail: parked a bad message on %s: %s", msg.topic, exc)
                else:
                    log.exception("retail: could not store a message on %s", msg.topic)
                try:
                    self.retail.reject(msg.topic, msg.payload, f"{type(exc).__name__}: {exc}")
                except Exception:
                    log.exception("retail: could not park it either; left for redelivery")
                    continue
            self.uplink.ack_retail(msg)
        answers = []
        if self.kiosk is not None:
            for req in self.kiosk.take_requests():
                try:
                    answers.append((req, self.retail.handle(req.action, req.body)))
                except Exception:  # the page must get an answer; the loop goes on
                    log.exception("counter request %s failed", req.action)
                    answers.append((req, {"ok": False, "title": Message(N_("Terminal error")),
                                          "message": Message(N_("Try again; if it happens "
                                                                "again, call support."))}))
        try:
            self.retail.tick()
        except Exception:
            log.exception("retail: periodic work failed")
        if self.retail.version != self.retail_seen:
            self.retail_seen = self.retail.version
            self.alerts_waiting = True  # stock and order events go out at once
            if self.kiosk is not None:
                self.kiosk.update_counter(self.counter_snapshot())
        # Answered only now: whoever reads the state after an answer sees its effect.
        for req, answer in answers:
            req.answer(answer)

    def _record_alerts(self, changes: list[AlertChange]) -> None:
        """Alert changes go into the outbox as events (sent before any reading) and into
        the terminal's status, where the kiosk shows them and sounds the buzzer."""
        if not changes:
            return
        wall, synced = self.clock.read()
        self.store.add([as_event(c, wall, synced) for c in changes])
        self.alerts_waiting = True  # sent at once, not at the next publish interval
        for c in changes:
            log.warning("alert %s %s (%s, %s): %s", c.state, c.rule, c.fridge, c.severity,
                        c.message)
        by_fridge: dict[str, list[dict[str, object]]] = {}
        for a in self.alerting.active():
            by_fridge.setdefault(a.fridge, []).append(
                {"id": a.id, "rule": a.rule, "severity": a.severity, "message": a.message})
        for fridge in {c.fridge for c in changes}:
            self._merge_status(fridge, {"alerts": by_fridge.get(fridge, [])})

    def _merge_status(self, device: str, status: dict[str, object]) -> None:
        wall, _ = self.clock.read()
        merged = self.status.setdefault(device, {})
        merged.update(status)
        self.store.set_device_status(device, wall, merged)

    def keep_within_budget(self) -> None:
        edge = self.config.edge
        done = self.store.enforce_budget(int(edge.disk_budget_mb * 1_000_000),
                                         edge.compact_bucket_s)
        if done["aggregates"] or done["history_dropped"]:
            log.warning("disk budget: dropped %d confirmed records, compacted %d readings "
                        "into %d aggregates", done["history_dropped"],
                        done["readings_compacted"], done["aggregates"])
            self.outbox.forget_cursors()  # rows behind the cursors changed
            for key, n in done.items():
                self.budget_counters[key] = self.budget_counters.get(key, 0) + n

    def report_status(self) -> None:
        now = self.monotonic()
        for reader in self.readers:
            stats = reader.stats()
            stats["stalled"] = now - reader.alive_at > STALL_S
            if stats["stalled"]:
                log.error(
                    "%s: reader thread has not run for %.0f s", reader.device, now - reader.alive_at
                )
            self._merge_status(reader.device, stats)
        c = self.uplink.counters
        self._merge_status(
            "uplink",
            {
                "connected": self.uplink.connected,
                "connects": c.connects,
                "published": c.published,
                "acked": c.acked,
                "rejected": c.rejected,
                "receipts": c.receipts,
                "confirmed": self.outbox.confirmed,
                "republished": self.outbox.republished,
                "disk_used_bytes": self.store.used_bytes(),
                **self.budget_counters,
                "last_error": c.last_error,
            },
        )
        if self.metrics is not None:
            self.metrics.publish(render_metrics(metric_families(
                {"stored": self.stored, "duplicates": self.duplicates,
                 "confirmed": self.outbox.confirmed, "republished": self.outbox.republished},
                {"connected": self.uplink.connected, "connects": c.connects,
                 "published": c.published, "acked": c.acked, "receipts": c.receipts},
                self.store.counts(), {r.device: r.stats() for r in self.readers},
                [a.severity for a in self.alerting.active()], self.store.used_bytes())))

    # ------------------------------------------------------------ running

    def rebuild_rules(self, hours: float = 24.0) -> int:
        """After a restart, replay the last day of stored records into the rule engine, so
        that an alert active before the restart is still active (and a cumulative rule still
        remembers its hours). Alert changes already recorded are not recorded again; any
        other (one the crash kept us from recording) is. Returns how many records."""
        wall, _ = self.clock.read()
        since = wall - hours * 3600
        records: list[NewReading | NewEvent] = []
        for device, dev_boot, fseq, dev_ms, w, synced, probes in self.store.db.execute(
            "SELECT device, dev_boot, fseq, dev_ms, wall, synced, probes FROM readings "
            "WHERE wall >= ? AND seq_last IS NULL", (since,)
        ):
            records.append(NewReading(device, fseq, dev_ms, w, bool(synced),
                                      [tuple(p) for p in json.loads(probes)], dev_boot))
        for device, type_, fseq, dev_ms, w, synced, data, dev_boot in self.store.db.execute(
            "SELECT device, type, fseq, dev_ms, wall, synced, data, dev_boot FROM events "
            "WHERE wall >= ? AND type IN ('door', 'compressor', 'power', 'defrost') "
            "AND dev_ms IS NOT NULL", (since,)
        ):
            records.append(NewEvent(device, type_, fseq, dev_ms, w, bool(synced),
                                    json.loads(data), dev_boot))
        records.sort(key=lambda r: (r.device, r.dev_boot or 0, r.dev_ms or 0))
        known = {
            (d.get("id"), d.get("change"))
            for (raw,) in self.store.db.execute(
                "SELECT data FROM events WHERE type='alert' AND wall >= ?", (since,))
            for d in [json.loads(raw)]
        }
        self.alerting.restore_anchors(time_anchors.load(self.store.db))
        changes = [c for c in self.alerting.feed(records) if (c.id, c.state) not in known]
        time_anchors.save(self.store.db, self.alerting.take_new_anchors())
        self._record_alerts(changes)
        if records:
            log.info("rules: replayed %d stored records; %d active alerts", len(records),
                     len(self.alerting.active()))
        return len(records)

    def _report_recovery(self) -> None:
        """A damaged database was moved aside at start-up: tell the cloud, as an event."""
        if self.store.recovered is None:
            return
        problem, aside = self.store.recovered
        wall, synced = self.clock.read()
        self.store.add(
            [
                NewEvent(
                    "terminal",
                    "storage",
                    None,
                    None,
                    wall,
                    synced,
                    {
                        "problem": problem,
                        "moved_to": str(aside),
                        "action": "started a new database",
                    },
                )
            ]
        )

    def run(self, *, until: Callable[[], bool] = lambda: False) -> None:
        self._report_recovery()
        self.rebuild_rules()
        log.info(
            "edge agent for store %s, boot %d, database %s",
            self.config.edge.store_id,
            self.store.boot,
            self.store.path,
        )
        self.tap.start()
        if self.metrics is not None:
            self.metrics.start()
            log.info("metrics at http://127.0.0.1:%d/metrics", self.metrics.port)
        for reader in self.readers:
            reader.start()
        if self.kiosk is not None:
            self.kiosk.update_counter(self.counter_snapshot())
            self.kiosk.start()
            log.info("terminal page at %s, counter at %scounter", self.kiosk.url,
                     self.kiosk.url)
        next_publish = next_status = next_prune = next_readings = next_kiosk = self.monotonic()
        seen_connects = self.uplink.counters.connects
        outbox = self.outbox
        next_republish = next_publish + outbox.confirm_wait
        seen_confirmed = outbox.confirmed
        try:
            while not self.stop_event.is_set() and not until():
                self.uplink.poll(timeout=0.05)
                self._step_commands()
                self.drain()
                self.step_retail()
                acked = outbox.acknowledge()
                self._record_alerts(self.alerting.tick())
                self.step_vitals()
                now = self.monotonic()
                self.service.step(now, {r.device: r.opened.is_set() for r in self.readers})
                # A backlog that filled the in-flight window continues as PUBACKs free it,
                # instead of waiting for the next interval.
                if self.uplink.counters.connects != seen_connects:
                    # Connected (the first time too): whatever waited goes out now, not at
                    # the next readings interval (a day's backlog must not idle for 60 s).
                    seen_connects = self.uplink.counters.connects
                    next_readings = now
                readings_due = now >= next_readings
                if self.alerts_waiting and self.uplink.can_publish():
                    self.alerts_waiting = False
                    outbox.publish(readings=False)
                freed = outbox.readings_held and outbox.confirmed != seen_confirmed
                seen_confirmed = outbox.confirmed
                if now >= next_publish or readings_due or (acked and outbox.window_full) or freed:
                    outbox.publish(readings=readings_due or outbox.window_full or freed)
                    next_publish = max(next_publish, now + self.config.edge.publish_interval_s)
                    if readings_due:
                        next_readings = now + self.config.edge.readings_interval_s
                if now >= next_republish:
                    outbox.republish_unconfirmed()
                    next_republish = now + outbox.confirm_wait / 2
                if self.kiosk is not None and now >= next_kiosk:
                    # The page polls once a second: no need to rebuild it on every pass.
                    self.kiosk.update(self.kiosk_snapshot())
                    self.kiosk.update_counter(self.counter_snapshot())
                    next_kiosk = now + 0.5
                if now >= next_status:
                    self.report_status()
                    self.keep_within_budget()
                    self.health.step(at=self.clock.read()[0], ready=self.service.state.ready,
                                     connected=self.uplink.connected,
                                     confirmed=outbox.confirmed > 0,
                                     outbox_empty=self.store.outbox_empty())
                    next_status = now + STATUS_EVERY_S
                if now >= next_prune:
                    wall, _ = self.clock.read()
                    self.store.prune(wall - self.config.edge.retain_days * 86400)
                    next_prune = now + PRUNE_EVERY_S
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.service.stopping()
        self.stop_event.set()
        if self.kiosk is not None:
            self.kiosk.close()
        for reader in self.readers:
            reader.join(timeout=2.0)
        self.tap.close()
        if self.metrics is not None:
            self.metrics.close()
        self.drain()  # what the readers had already decoded is kept, not dropped
        self.outbox.acknowledge()
        self.uplink.close()
        if self.command_handler is not None:
            self.command_handler.close()
        self.outbox.acknowledge()
        self.store.close()
        log.info("edge agent stopped")

    # ------------------------------------------------------------ signed commands

    def _command_handler(self) -> CommandHandler | None:
        """Signed commands from the cloud, if this store trusts a command key at all."""
        return load_commands(
            self.config.commands,
            self.config.replay_db_path,
            self.config.edge.store_id,
            self.uplink,
            self.store,
            self.readers,
            self.clock,
            self.config.edge.data_dir,
            UpdateSetup(self.config.mqtt.tls, self.config.edge.data_dir / "artefacts",
                        self.firmware_keys),
            self_update.setup(self.config),
        )

    def _step_commands(self) -> None:
        if self.command_handler is not None:
            self.command_handler.step()

    def install_signal_handlers(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %d: stopping", signum)
            self.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
