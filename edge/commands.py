"""Signed commands at the store: verify, run on the fridge, answer, keep an audit trail.

A message on `xd/v1/{store}/cmd/req` goes through `xiaodian.wire.commands.CommandVerifier`
(target, signature, pinned key, expiry, replay memory). Refused: answered with the reason.
Accepted: `set_point`, `defrost`, `unlock` and `reboot` go to the named fridge over serial
and are answered with the device's ACK; `diagnostics` is answered by the agent itself, and
`capture` once its capture through the agent's tap is done (`edge/remote_capture.py`).

Every answer is published on the request's Response Topic with its Correlation Data and
stored as a "command" event, so the cloud also gets it through the outbox. The broker's
PUBACK for the request goes out only after that (the uplink acknowledges by hand): a crash
before it means redelivery, which the replay memory answers with the earlier result (or
"result unknown" if the crash came mid-command), never a second run.

Driven by `step()` from the agent's main thread, which owns the MQTT client and SQLite;
the serial side runs on the fridge's reader thread and is polled, never waited for.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edge import firmware_push, self_update, update_jobs
from edge.artefact_update import (
    ArtefactUpdate,
    Attach,
    InstallJob,
    NotReady,
    UpdateRequest,
    UpdateSetup,
    request_from,
)
from edge.config import CommandSettings
from edge.remote_capture import RemoteCapture
from edge.replay_store import ReplayStore
from edge.serial_link import DeviceCommand, FridgeReader, PortReader
from edge.store import EdgeStore, NewEvent
from edge.uplink import InboundCommand, Uplink
from edge.wallclock import WallClock
from firmware_bridge import codec
from xiaodian.pki.keys import load_command_public_key
from xiaodian.wire.commands import (
    AGENT,
    AGENT_DEVICE,
    MAX_RESULT_BYTES,
    CommandVerifier,
    Reason,
    Scalar,
    Verdict,
)

log = logging.getLogger(__name__)

# A command the fridge's reader has not taken by then (port down, no HELLO yet) is
# withdrawn and reported: it then can never run late.
DEVICE_QUEUE_S = 5.0
# Once sent, the reader settles it within ~1.5 s (protocol §5 retries); this only bounds a
# reader that has stopped, so one stuck command cannot hold back every later PUBACK.
DEVICE_ANSWER_S = 10.0
AUDIT_DEVICE = "terminal"  # the events stream of the store terminal itself

_DEVICE_ACTIONS: Mapping[str, Callable[[Mapping[str, Scalar]], tuple[int, bytes]]] = {
    "set_point": lambda p: (codec.SET_POINT, codec.pack_set_point(int(p["tenths_c"]))),
    "defrost": lambda p: (codec.DEFROST_NOW, codec.pack_defrost_now(int(p["minutes"]))),
    "unlock": lambda p: (codec.UNLOCK, codec.pack_unlock(int(p["seconds"]))),
    "reboot": lambda p: (codec.REBOOT, codec.pack_reboot()),
}
_STATS_SUMMARY = (
    "reconnects",
    "last_error",
    "frames_ok",
    "cobs_errors",
    "crc_errors",
    "length_errors",
    "seq_gaps",
    "missed_frames",
    "bad_messages",
    "lines",
)


@dataclass
class _Job:
    inbound: InboundCommand
    received_at: float  # wall clock
    verdict: Verdict
    device_command: DeviceCommand | None = None
    device: str | None = None
    started: float = 0.0  # monotonic
    waits_for: _Job | None = None  # a redelivery of a command still running here
    capture: RemoteCapture | None = None
    result: dict[str, Any] | None = None


class CommandHandler:
    def __init__(
        self,
        settings: CommandSettings,
        replay_db: Path | str,  # or ":memory:"
        store_id: str,
        uplink: Uplink,
        store: EdgeStore,
        readers: Sequence[PortReader],
        clock: WallClock,
        *,
        data_dir: Path | None = None,  # where the agent's tap is; no captures without it
        monotonic: Callable[[], float] = time.monotonic,
        updates: UpdateSetup | None = None,  # no `update` commands without it
        self_updates: self_update.SelfUpdateSetup | None = None,  # none of kind "agent"
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.replay_db = replay_db
        self.store_id = store_id
        self.uplink = uplink
        self.store = store
        self.readers = list(readers)
        self.fridges = {r.device: r for r in self.readers if isinstance(r, FridgeReader)}
        self.clock = clock
        self.monotonic = monotonic
        self.public_keys = {k.id: load_command_public_key(k.public_key) for k in settings.keys}
        self._verifier: CommandVerifier | None = None
        self._replays: ReplayStore | None = None
        self._jobs: list[_Job] = []
        self._running: dict[str, _Job] = {}  # command id -> job, while it runs here
        self.counts: dict[str, int] = {}
        self.update_setup = updates
        self.self_update = self_updates
        self.updates: dict[str, ArtefactUpdate] = {}  # device -> its update, until reported
        self._resumed = False  # the updates a previous run left (update_jobs) taken up

    def _wall(self) -> float:
        return self.clock.read()[0]

    def _verifier_here(self) -> CommandVerifier:
        # Opened on first use, in the thread that runs the agent: SQLite connections are
        # bound to the thread that made them.
        if self._verifier is None:
            self._replays = ReplayStore(self.replay_db)
            self._verifier = CommandVerifier(
                self.public_keys,
                self.store_id,
                self._wall,
                self._replays,
                skew_s=self.settings.skew_s,
            )
        return self._verifier

    # ------------------------------------------------------------ driving

    def step(self) -> int:
        """Take new requests, advance running ones, answer those settled; returns answers."""
        if not self._resumed:
            self._resumed = True
            self._resume_updates()
        for inbound in self.uplink.take_commands():
            self._jobs.append(self._start(inbound))
        self._step_updates()
        answered = 0
        still: list[_Job] = []
        for job in self._jobs:
            if job.result is None:
                self._check(job)
            if job.result is None:
                still.append(job)
            else:
                self._finish(job)
                answered += 1
        self._jobs = still
        return answered

    def close(self) -> None:
        # Unanswered requests were never acknowledged: the broker delivers them again.
        if self._replays is not None:
            self._replays.close()
            self._replays = None
            self._verifier = None

    # ------------------------------------------------------------ stages

    def _start(self, inbound: InboundCommand) -> _Job:
        verdict = self._verifier_here().verify(inbound.payload)
        job = _Job(inbound, self._wall(), verdict, started=self.monotonic())
        command = verdict.command
        if not verdict.ok:
            running = self._running.get(command.command_id) if command else None
            if verdict.reason is Reason.REPLAYED and running is not None:
                job.waits_for = running  # answered with that run's result once it has one
            else:
                job.result = self._refusal(job, verdict.earlier_result)
            return job
        assert command is not None
        self._running[command.command_id] = job
        params = command.params
        device = params.get("device")
        job.device = device if isinstance(device, str) else None
        if command.action == "diagnostics":
            if job.device is not None and job.device not in {r.device for r in self.readers}:
                job.result = self._result(job, "failed", "unknown_device")
            else:
                body = diagnostics(self.readers, self.uplink, self.store, str(params["scope"]))
                if job.device is not None:
                    body["links"] = {job.device: body["links"][job.device]}
                job.result = self._result(job, "executed", "ok", diagnostics=body)
        elif command.action == "capture":
            self._start_capture(job, command.command_id, int(params["seconds"]))
        elif command.action == "update":
            self._start_update(job, command.command_id, params)
        elif command.action == "reboot" and job.device == AGENT:
            job.result = self._result(
                job, "failed", "unsupported", detail="restarting the agent is its supervisor's job"
            )
        elif job.device not in self.fridges:
            job.result = self._result(job, "failed", "unknown_device")
        else:
            msg_type, payload = _DEVICE_ACTIONS[command.action](params)
            job.device_command = self.fridges[job.device].send_command(msg_type, payload)
        return job

    def _start_capture(self, job: _Job, command_id: str, seconds: int) -> None:
        if job.device is not None and job.device not in {r.device for r in self.readers}:
            job.result = self._result(job, "failed", "unknown_device")
        elif self.data_dir is None:
            job.result = self._result(job, "failed", "unsupported",
                                      detail="this agent has no tap")
        else:
            job.capture = RemoteCapture(self.data_dir, command_id,
                                        [job.device] if job.device else [], seconds)
            job.capture.start()

    def _start_update(self, job: _Job, command_id: str, params: Mapping[str, Scalar]) -> None:
        """Answered at once (`update_started`): the update may take many minutes, and the
        broker's acknowledgement of later commands must not wait for it. Its progress goes
        to the cloud as `update` events (`_step_updates`)."""
        setup = self.update_setup
        device = str(params["device"])
        if setup is None or not self._takes(str(params["kind"])):
            job.result = self._result(job, "failed", "unsupported",
                                      detail="this terminal takes no such update")
        elif not self._updatable(str(params["kind"]), device):
            job.result = self._result(job, "failed", "unknown_device")
        elif device in self.updates:
            job.result = self._result(job, "failed", "busy",
                                      detail="an update of this device is running")
        else:
            request = request_from(command_id, params)
            # Kept before it is answered: an agent that restarts from here on takes it up.
            update_jobs.save(self.store.db, request, "idle", 0)
            self.updates[device] = self._update(setup, request, None, False).start()
            job.result = self._result(job, "executed", "update_started")

    def _takes(self, kind: str) -> bool:
        """Whether this terminal trusts a key for `kind`: it installs nothing unsigned."""
        if kind == "agent":
            return self.self_update is not None and bool(self.self_update.keys)
        setup = self.update_setup
        return kind == "firmware" and setup is not None and bool(setup.firmware_keys)

    def _updatable(self, kind: str, device: str) -> bool:
        return device == AGENT_DEVICE if kind == "agent" else device in self.fridges

    def _update(self, setup: UpdateSetup, request: UpdateRequest,
                reported: tuple[str, int] | None, resumed: bool) -> ArtefactUpdate:
        attach: Attach | None = None
        if request.kind == "agent":
            mine = self.self_update
            assert mine is not None

            def install(path: Path) -> InstallJob:
                return self_update.install(mine, request.command_id, request.version,
                                           request.sha256, path, wall=self._wall,
                                           monotonic=self.monotonic)

            if resumed:  # the switch restarted the agent: watch, never hand it over again
                state = reported[0] if reported else "idle"

                def taken_up() -> InstallJob | None:
                    return self_update.attach(mine, request.command_id, state, self.monotonic)

                attach = taken_up
        else:
            reader, keys = self.fridges[request.device], setup.firmware_keys

            def install(path: Path) -> InstallJob:
                if reader.hello is None:  # a restarted agent, the fridge not attached yet
                    raise NotReady(f"{reader.device}: no HELLO yet")
                return firmware_push.start(reader, path.read_bytes(), keys, resumed=resumed)

        return ArtefactUpdate(request, setup.tls, setup.cache, install, reported,
                              monotonic=self.monotonic, attach=attach)

    def _resume_updates(self) -> None:
        """The updates the agent's previous run left running (edge/update_jobs.py): the
        download resumes from its .part, the push from the offset the device holds."""
        setup = self.update_setup
        for request, state, percent in update_jobs.load(self.store.db):
            if (setup is None or not self._takes(request.kind)
                    or not self._updatable(request.kind, request.device)):
                log.warning("update %s of %s left by the last run cannot go on here",
                            request.command_id, request.device)
                update_jobs.drop(self.store.db, request.device)
                continue
            log.info("update %s of %s: taken up again after %s %s%%", request.command_id,
                     request.device, state, percent)
            reported = None if state == "idle" else (state, percent)
            self.updates[request.device] = self._update(setup, request, reported,
                                                        True).start()

    def _step_updates(self) -> None:
        for device, update in list(self.updates.items()):
            report = update.poll()
            if report is not None:
                wall, synced = self.clock.read()

                def keep(db: Any, report: dict[str, Any] = report,
                         request: UpdateRequest = update.request) -> None:
                    # with the event, in its transaction: reported once, across restarts
                    if report["state"] == "done":
                        update_jobs.drop(db, request.device)
                    else:
                        update_jobs.save(db, request, str(report["state"]),
                                         int(report["percent"]))

                self.store.add([NewEvent(device, "update", None, None, wall, synced, report)],
                               extra=keep)
                log.info("update %s of %s: %s %s%%", report["command"], device,
                         report["state"], report["percent"])
            if update.finished:
                del self.updates[device]

    def _check(self, job: _Job) -> None:
        if job.capture is not None:
            if job.capture.done.is_set():
                ok = job.capture.outcome == "ok"
                job.result = self._result(job, "executed" if ok else "failed",
                                          job.capture.outcome, **job.capture.result)
            return
        if job.waits_for is not None:
            if job.waits_for.result is not None:
                earlier = json.dumps(job.waits_for.result, separators=(",", ":")).encode()
                job.result = self._refusal(job, earlier)
            return
        dc = job.device_command
        assert dc is not None
        age = self.monotonic() - job.started
        if dc.done.is_set():
            status = "executed" if dc.executed else "failed"
            job.result = self._result(job, status, dc.outcome, attempts=dc.attempts)
        elif age > DEVICE_QUEUE_S and dc.cancel():
            job.result = self._result(
                job, "failed", "device_unavailable", detail="the fridge's link is not up"
            )
        elif age > DEVICE_QUEUE_S + DEVICE_ANSWER_S:
            job.result = self._result(
                job, "failed", "no_answer", detail="outcome unknown", attempts=dc.attempts
            )

    def _finish(self, job: _Job) -> None:
        """Remember, record, answer, acknowledge: in this order, so that nothing is acked
        before it is durable."""
        assert job.result is not None
        result = job.result
        body = json.dumps(result, separators=(",", ":")).encode()
        command = job.verdict.command
        if job.verdict.ok and command is not None:
            self._running.pop(command.command_id, None)
            kept = body
            if len(kept) > MAX_RESULT_BYTES:  # only a huge diagnostics report can be
                kept = json.dumps({**result, "diagnostics": "omitted: too large"}).encode()
            if "capture" in result:  # the replay memory needs what it was, not the bytes
                kept = json.dumps({**result, "capture": _without_bytes(result)}).encode()
            self._verifier_here().record_result(command.command_id, kept)
        audit = dict(result)
        if "diagnostics" in audit:  # the report went to the asker; the trail says it was sent
            audit["diagnostics"] = "sent in the response"
        if "capture" in audit:
            audit["capture"] = _without_bytes(audit)
        wall, synced = self.clock.read()
        self.store.add([NewEvent(AUDIT_DEVICE, "command", None, None, wall, synced, audit)])
        key = f"{result['status']}:{result.get('reason') or result.get('outcome')}"
        self.counts[key] = self.counts.get(key, 0) + 1
        log.info(
            "command %s (%s): %s %s",
            result.get("id"),
            result.get("action"),
            result["status"],
            result.get("reason") or result.get("outcome"),
        )
        if not self.uplink.respond(job.inbound, body):
            log.info(
                "command %s: connection gone before the answer; it will come again",
                result.get("id"),
            )

    # ------------------------------------------------------------ answers

    def _base(self, job: _Job) -> dict[str, Any]:
        command = job.verdict.command
        out: dict[str, Any] = {"id": command.command_id if command else None}
        if command is not None:
            out["action"] = command.action
            out["params"] = dict(command.params)
        return out

    def _refusal(self, job: _Job, earlier: bytes | None) -> dict[str, Any]:
        verdict = job.verdict
        out = {
            **self._base(job),
            "status": "refused",
            "reason": verdict.reason.value,
            "detail": verdict.detail,
        }
        if verdict.reason is Reason.REPLAYED:
            # None: the first run was interrupted (the agent stopped mid-command).
            out["earlier_result"] = _parse_earlier(earlier)
        out["received_at"] = job.received_at
        out["finished_at"] = self._wall()
        return out

    def _result(self, job: _Job, status: str, outcome: str, **extra: Any) -> dict[str, Any]:
        return {
            **self._base(job),
            "status": status,  # executed | failed
            "device": job.device,
            "outcome": outcome,  # the device's ACK status, or why it never got one
            **extra,
            "received_at": job.received_at,
            "finished_at": self._wall(),
        }


def _without_bytes(result: dict[str, Any]) -> dict[str, Any]:
    capture = dict(result["capture"])
    if "pcapng_b64" in capture:
        capture["pcapng_b64"] = "sent in the response"
    return capture


def _parse_earlier(earlier: bytes | None) -> Any:
    if earlier is None:
        return None
    try:
        return json.loads(earlier)
    except ValueError:
        return None


def diagnostics(
    readers: Sequence[PortReader], uplink: Uplink, store: EdgeStore, scope: str
) -> dict[str, Any]:
    """Link counters, decoder stats, uplink counters and outbox depth; nothing secret:
    no configuration, key material or pickup codes, only counters and device identities."""
    links: dict[str, Any] = {}
    for reader in readers:
        stats = reader.stats()
        if scope != "full":
            stats = {k: stats[k] for k in _STATS_SUMMARY if k in stats}
        links[reader.device] = stats
    outbox = {
        device: {k: v for k, v in counts.items() if k.endswith("_pending")}
        for device, counts in store.counts().items()
    }
    return {
        "scope": scope,
        "links": links,
        "uplink": {"connected": uplink.connected, **asdict(uplink.counters)},
        "outbox": outbox,
        "outbox_pending": sum(sum(v.values()) for v in outbox.values()),
        "boot": store.boot,
    }


def load(
    settings: CommandSettings | None,
    replay_db: Path | str,
    store_id: str,
    uplink: Uplink,
    store: EdgeStore,
    readers: Sequence[PortReader],
    clock: WallClock,
    data_dir: Path | None = None,
    updates: UpdateSetup | None = None,
    self_updates: self_update.SelfUpdateSetup | None = None,
) -> CommandHandler | None:
    """The handler for a configured store (and the uplink told to subscribe), else None."""
    if settings is None:
        return None
    uplink.commands = True
    return CommandHandler(settings, replay_db, store_id, uplink, store, readers, clock,
                          data_dir=data_dir, updates=updates, self_updates=self_updates)
