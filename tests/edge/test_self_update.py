"""The agent's half of its own update (edge/self_update.py), against real signed release
files and the file protocol the root helper speaks (docs/contracts.md, "Self-update files").
The helper is played by the test: it writes status.json as edge/release_switch.py would."""

from __future__ import annotations

import hashlib
import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from devstack.testkit.wait import wait
from edge import artefact_update, self_update
from edge.artefact_update import ArtefactUpdate, UpdateRequest
from edge.self_update import HANDOVER_S, READ_EVERY_S, SETTLE_S, SelfUpdateSetup, StatusWatch
from xiaodian import agent_release
from xiaodian.mqtt import TlsSettings

RUNNING = "1.4.2"
KEY = Ed25519PrivateKey.generate()
CMD = "c0ffee" * 4


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def release(tmp_path: Path, version: str = "1.5.0", *, key: Ed25519PrivateKey = KEY,
            arch: str = "amd64", python: str = "3.11", payload: bytes = b"venv" * 1000) -> Path:
    path = tmp_path / f"{version}-{arch}-{python}.bin"
    with path.open("wb") as out:
        agent_release.write(out, io.BytesIO(payload), version, arch=arch, python=python,
                            schema=1, key=key)
    return path


def _setup(tmp_path: Path, keys: bool = True) -> SelfUpdateSetup:
    return SelfUpdateSetup([KEY.public_key()] if keys else [], tmp_path / "update",
                           tmp_path / "root" / "status.json", health_window_s=180.0)


def _install(setup: SelfUpdateSetup, path: Path, clock: Clock,
             version: str = "1.5.0") -> StatusWatch:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    return self_update.install(setup, CMD, version, sha, path, wall=lambda: 1.7e9,
                               monotonic=clock, running=RUNNING, arch="amd64", python="3.11")


def _status(setup: SelfUpdateSetup, state: str, result: str = "", detail: str = "",
            command: str = CMD, **extra: Any) -> None:
    setup.status_file.parent.mkdir(exist_ok=True)
    setup.status_file.write_text(json.dumps({
        "command": command, "version": "1.5.0", "from": RUNNING, "state": state,
        "result": result, "detail": detail, "at": 1.7e9, **extra}))


def _helper_takes(setup: SelfUpdateSetup) -> dict[str, Any]:
    """What the root helper does first: move the request out of the agent's directory."""
    taken = setup.status_file.parent / "taken"
    taken.mkdir(parents=True, exist_ok=True)
    request = setup.update_dir / "request.json"
    doc: dict[str, Any] = json.loads(request.read_text())
    request.rename(taken / "request.json")
    (setup.update_dir / doc["file"]).rename(taken / doc["file"])
    return doc


def _poll(job: StatusWatch, clock: Clock, advance: float = READ_EVERY_S) -> dict[str, Any]:
    clock.t += advance
    return job.progress()


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(("make", "version", "reason"), [
    (lambda p: release(p, key=Ed25519PrivateKey.generate()), "1.5.0", "bad_signature"),
    (lambda p: release(p, "1.4.2"), "1.4.2", "downgrade"),
    (lambda p: release(p, "1.3.9"), "1.3.9", "downgrade"),
    (lambda p: release(p, arch="arm64"), "1.5.0", "wrong_platform"),
    (lambda p: release(p, python="3.12"), "1.5.0", "wrong_platform"),
    (lambda p: release(p), "1.6.0", "bad_version"),  # not the release the command names
])
def test_a_release_it_may_not_install_is_refused_and_nothing_is_handed_over(
        tmp_path: Path, make: Any, version: str, reason: str) -> None:
    setup, path = _setup(tmp_path), make(tmp_path)
    with pytest.raises(ValueError) as err:
        _install(setup, path, Clock(), version)
    assert getattr(err.value, "reason", None) == reason
    assert not setup.update_dir.exists() or not any(setup.update_dir.iterdir())
    assert not path.exists()  # the refused download is not kept (a release is ~30 MB)


def test_a_hand_over_that_cannot_be_written_is_io_error_not_an_exception_in_the_loop(
        tmp_path: Path) -> None:
    setup = _setup(tmp_path)
    setup.update_dir.write_text("a file where the directory should be")
    with pytest.raises(ValueError) as err:
        _install(setup, release(tmp_path), Clock())
    assert getattr(err.value, "reason", None) == "io_error"
    with pytest.raises(ValueError) as err:
        self_update.install(_setup(tmp_path / "x"), CMD, "1.5.0", "0" * 64,
                            tmp_path / "gone.bin", running=RUNNING)
    assert getattr(err.value, "reason", None) == "io_error"


def test_a_payload_changed_after_signing_and_a_terminal_without_keys_are_refused(
        tmp_path: Path) -> None:
    path = release(tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as err:
        _install(_setup(tmp_path), path, Clock())
    assert getattr(err.value, "reason", None) == "bad_hash"
    with pytest.raises(ValueError) as err:
        _install(_setup(tmp_path, keys=False), release(tmp_path), Clock())
    assert getattr(err.value, "reason", None) == "bad_signature"


def test_the_platform_is_named_as_debian_names_it() -> None:
    assert [self_update.dpkg_arch(m) for m in ("x86_64", "aarch64", "armv7l")] == [
        "amd64", "arm64", "armhf"]


# ------------------------------------------------------------------ hand-over and verdict


def test_an_accepted_release_is_handed_over_once_and_the_helpers_verdict_ends_the_job(
        tmp_path: Path) -> None:
    setup, clock = _setup(tmp_path), Clock()
    path = release(tmp_path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    job = _install(setup, path, clock)
    request = json.loads((setup.update_dir / "request.json").read_text())
    assert request == {"command": CMD, "version": "1.5.0", "file": "xiaodian-agent_1.5.0.xdrel",
                       "sha256": sha, "from": RUNNING, "at": 1.7e9}
    handed = setup.update_dir / request["file"]
    assert hashlib.sha256(handed.read_bytes()).hexdigest() == sha
    assert stat.S_IMODE(handed.stat().st_mode) == 0o644
    assert not path.exists()  # moved, not copied: no second 30 MB on the terminal's disk
    assert sorted(p.name for p in setup.update_dir.iterdir()) == [
        "request.json", "xiaodian-agent_1.5.0.xdrel"]
    assert job.progress()["percent"] == 0 and not job.done.is_set()
    _helper_takes(setup)
    _status(setup, "installing")
    assert _poll(job, clock)["percent"] == 20
    _status(setup, "installing", command="an-earlier-command")  # not ours: changes nothing
    assert _poll(job, clock)["percent"] == 20 and not job.done.is_set()
    _status(setup, "trial")
    assert _poll(job, clock)["percent"] == 60
    _status(setup, "confirmed", "confirmed")
    p = _poll(job, clock)
    assert job.done.is_set() and (p["result"], p["percent"]) == ("confirmed", 100)
    assert not (setup.update_dir / "request.json").exists()  # never written again


@pytest.mark.parametrize(("state", "result", "detail"), [
    ("refused", "bad_signature", "not signed by a key in /etc/xiaodian"),
    ("rolled_back", "rolled_back", "fridge-1 never read"),
])
def test_a_refusal_or_a_rollback_by_the_helper_is_the_result_with_its_detail(
        tmp_path: Path, state: str, result: str, detail: str) -> None:
    setup, clock = _setup(tmp_path), Clock()
    job = _install(setup, release(tmp_path), clock)
    _helper_takes(setup)
    _status(setup, state, result, detail)
    p = _poll(job, clock)
    assert job.done.is_set() and (p["result"], p["detail"]) == (result, detail)
    assert "reasons" not in p  # a helper that gave none: the detail is its own words


def test_status_is_read_at_most_once_a_second(tmp_path: Path) -> None:
    setup, clock = _setup(tmp_path), Clock()
    job = _install(setup, release(tmp_path), clock)
    job.progress()
    _status(setup, "confirmed", "confirmed")
    assert not _poll(job, clock, READ_EVERY_S / 2)["result"]
    assert _poll(job, clock, READ_EVERY_S / 2)["result"] == "confirmed"


# ------------------------------------------------------------------ after the restart


def test_a_resumed_update_only_watches_and_reports_the_verdict_it_finds(tmp_path: Path) -> None:
    setup, clock = _setup(tmp_path), Clock()
    _install(setup, release(tmp_path), clock)
    _helper_takes(setup)
    _status(setup, "rolled_back", "rolled_back", "the new agent never connected")
    # The next run (here the old release again, after the rollback) takes it up.
    job = self_update.attach(setup, CMD, "updating", clock)
    assert job is not None
    p = job.progress()
    assert job.done.is_set() and (p["result"], p["detail"]) == (
        "rolled_back", "the new agent never connected")
    assert not (setup.update_dir / "request.json").exists()
    assert not any(setup.update_dir.iterdir())


def test_attach_finds_a_hand_over_by_its_traces_and_only_then(tmp_path: Path) -> None:
    setup, clock = _setup(tmp_path), Clock()
    # A run that stopped before it handed anything over: the update starts afresh.
    assert self_update.attach(setup, CMD, "downloaded", clock) is None
    _install(setup, release(tmp_path), clock)  # ... and one that stopped right after
    assert self_update.attach(setup, CMD, "downloaded", clock) is not None
    _helper_takes(setup)
    assert self_update.attach(setup, CMD, "downloaded", clock) is None  # taken, no status yet
    assert self_update.attach(setup, CMD, "updating", clock) is not None  # reported: handed
    _status(setup, "installing")
    assert self_update.attach(setup, CMD, "downloaded", clock) is not None


# ------------------------------------------------------------------ no verdict


def test_a_request_no_helper_takes_is_withdrawn_and_reported_as_timeout(tmp_path: Path) -> None:
    setup, clock = _setup(tmp_path), Clock()
    job = _install(setup, release(tmp_path), clock)
    assert not _poll(job, clock, HANDOVER_S - 2 * READ_EVERY_S)["result"]
    p = _poll(job, clock, 2 * READ_EVERY_S)
    assert job.done.is_set() and p["result"] == "timeout" and "never took" in p["detail"]
    assert p["reasons"] == [{"code": "never_taken"}]
    assert not any(setup.update_dir.iterdir())  # withdrawn: nothing left for a late helper


def test_a_helper_that_took_the_request_gets_its_window_then_timeout(tmp_path: Path) -> None:
    setup, clock = _setup(tmp_path), Clock()
    job = _install(setup, release(tmp_path), clock)
    _helper_takes(setup)
    _status(setup, "trial")
    assert _poll(job, clock)["percent"] == 60
    window = setup.health_window_s + SETTLE_S
    assert not _poll(job, clock, window - 2 * READ_EVERY_S)["result"]
    p = _poll(job, clock, 2 * READ_EVERY_S)
    assert job.done.is_set() and p["result"] == "timeout" and "trial" in p["detail"]
    assert p["reasons"] == [{"code": "no_verdict", "state": "trial"}]
    # Taken, but no status at all (a helper that died at once): the same window, once.
    (tmp_path / "two").mkdir()
    setup2, clock2 = _setup(tmp_path / "two"), Clock()
    job2 = _install(setup2, release(tmp_path / "two"), clock2)
    _helper_takes(setup2)
    assert not _poll(job2, clock2, HANDOVER_S)["result"]
    assert not _poll(job2, clock2, window - 2 * READ_EVERY_S)["result"]
    p2 = _poll(job2, clock2, 2 * READ_EVERY_S)
    assert (p2["result"], p2["reasons"]) == ("timeout", [{"code": "no_verdict", "state": ""}])


# ------------------------------------------------------------------ the verdict's reasons

WHY = [{"code": "not_healthy_within", "window_s": 180}, {"code": "not_connected"},
       {"code": "devices_not_read", "devices": ["fridge-1"]}]
WHY_TEXT = "not healthy within 180 s; not connected to the cloud; devices not read: fridge-1"


def _agent_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> tuple[ArtefactUpdate, SelfUpdateSetup, Clock]:
    """The agent's update of itself as edge/commands.py builds it (the download replaced by
    a release already here): the job is self_update's StatusWatch."""
    setup, clock = _setup(tmp_path), Clock()
    path = release(tmp_path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(artefact_update, "fetch", lambda *a, **kw: path)
    request = UpdateRequest(CMD, "agent", "agent", "https://x/y", sha, 1, "1.5.0")
    tls = TlsSettings(tmp_path / "ca", tmp_path / "cert", tmp_path / "key")

    def install(p: Path) -> StatusWatch:
        return self_update.install(setup, CMD, "1.5.0", sha, p, monotonic=clock,
                                   running=RUNNING, arch="amd64", python="3.11")

    update = ArtefactUpdate(request, tls, tmp_path / "cache", install,
                            reported=("downloaded", 100), monotonic=clock).start()
    wait(lambda: update.poll() is not None and update.state == "updating", 5, "handed over")
    _helper_takes(setup)
    return update, setup, clock


def _last_report(update: ArtefactUpdate, clock: Clock) -> dict[str, Any]:
    clock.t += READ_EVERY_S
    report = update.poll()
    assert report is not None and update.finished
    return report


def test_the_helpers_reasons_go_to_the_cloud_beside_its_english_detail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    update, setup, clock = _agent_update(tmp_path, monkeypatch)
    _status(setup, "rolled_back", "rolled_back", WHY_TEXT, reasons=WHY)
    report = _last_report(update, clock)
    assert (report["result"], report["ok"]) == ("rolled_back", False)
    assert (report["reasons"], report["detail"]) == (WHY, WHY_TEXT)


@pytest.mark.parametrize("bad", [
    [{"code": "not_connected", "extra": 1}],  # a field the contract does not know
    [{"code": "from_a_newer_helper"}],
    [{"code": "devices_not_read", "devices": ["fridge-1\n"]}],
    [{"code": "restarted", "times": "2"}],
    {"code": "not_connected"},  # not a list
    [{"code": "not_connected"}] * 33,  # more than MAX_REASONS
])
def test_reasons_the_cloud_would_refuse_are_left_out_and_the_detail_still_goes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: Any) -> None:
    update, setup, clock = _agent_update(tmp_path, monkeypatch)
    _status(setup, "rolled_back", "rolled_back", "what the helper saw", reasons=bad)
    report = _last_report(update, clock)
    assert (report["result"], report["detail"]) == ("rolled_back", "what the helper saw")
    assert "reasons" not in report


# ------------------------------------------------------------------ the installer protocol


def test_installers_get_the_verified_files_path_and_an_unreadable_one_is_io_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fetched = tmp_path / "cache" / "abc.bin"
    monkeypatch.setattr(artefact_update, "fetch", lambda *a, **kw: fetched)
    given: list[object] = []

    def installer(path: Path) -> Any:
        given.append(path)
        return path.read_bytes()  # as firmware's does; the file is not there

    request = UpdateRequest("c1", "fridge-1", "firmware", "https://x/y", "0" * 64, 1, "1.1.0")
    tls = TlsSettings(tmp_path / "ca", tmp_path / "cert", tmp_path / "key")
    update = ArtefactUpdate(request, tls, tmp_path / "cache", installer,
                            reported=("downloaded", 100)).start()
    wait(lambda: update.poll() is not None and update.finished, 5, "the update's end")
    assert given == [fetched]
    assert (update.result, "No such file" in update.detail) == ("io_error", True)
