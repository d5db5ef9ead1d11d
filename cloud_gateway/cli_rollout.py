"""`xiaodian cloud rollout`: update a device id at stores, staged, from the cloud.

    start   publish a signed fridge image (--image, --device) or a signed release of the
            terminal's own software (--agent-release) on the artefact store and start a
            rollout (one store first, then --share of them, then all; halts past
            --max-failure-ratio)
    tick    advance a rollout once (start the stores its next stage opens)
    watch   tick every --interval seconds until done (exit 0) or halted (exit 3)
    status  one rollout (or the newest ones): state, counts, each store's state and result
    serve   the artefact store over HTTPS (client certificates of the project's CA required)
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from . import config as cloud_config
from . import rollout, rollouts, sql


def register(cmds: Any) -> None:
    ro = cmds.add_parser("rollout", help="update a device at stores from the cloud, staged")
    sub = ro.add_subparsers(dest="rollout_command", required=True, metavar="COMMAND")

    start = sub.add_parser("start", help="publish an image and start a staged rollout")
    start.add_argument("--config", required=True, type=Path, help="cloud TOML file")
    what = start.add_mutually_exclusive_group(required=True)
    what.add_argument("--image", type=Path, help="a signed firmware image (with --device)")
    what.add_argument("--agent-release", type=Path,
                      help="a signed release of the terminal's own software (.xdrel); its "
                           "signer must be one of the config's [rollout] agent_keys")
    start.add_argument("--device", help="the fridge id at every store (with --image)")
    start.add_argument("--store", dest="stores", action="append", required=True,
                       help="a store, in rollout order (repeatable; the first is the canary)")
    start.add_argument("--artefacts", required=True, type=Path,
                       help="the artefact store's directory (what `rollout serve` serves)")
    start.add_argument("--base-url", required=True,
                       help="the artefact store as the stores reach it: https://HOST:PORT")
    start.add_argument("--share", type=float, default=rollout.DEFAULT_SHARE)
    start.add_argument("--max-failure-ratio", type=float,
                       default=rollout.DEFAULT_MAX_FAILURE_RATIO)
    start.add_argument("--settle-s", type=float, default=None,
                       help="a store not done by then counts as failed (default "
                            f"{rollout.DEFAULT_SETTLE_S:.0f} for an image, "
                            f"{rollout.DEFAULT_AGENT_SETTLE_S:.0f} for an agent release)")
    start.set_defaults(func=_start)

    for name, fn, text in (("tick", _tick, "advance a rollout once"),
                           ("watch", _watch, "advance until done (0) or halted (3)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", required=True, type=Path, help="cloud TOML file")
        p.add_argument("rollout", metavar="ID")
        if name == "watch":
            p.add_argument("--interval", type=float, default=5.0)
            p.add_argument("--timeout", type=float, default=6 * 3600.0)
        p.set_defaults(func=fn)

    status = sub.add_parser("status", help="a rollout, or the newest ones")
    status.add_argument("--config", required=True, type=Path, help="cloud TOML file")
    status.add_argument("rollout", metavar="ID", nargs="?")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(func=_status)

    serve = sub.add_parser("serve", help="the artefact store over HTTPS (mutual TLS)")
    serve.add_argument("--dir", required=True, type=Path)
    serve.add_argument("--ca", required=True, type=Path, help="the project's CA")
    serve.add_argument("--cert", required=True, type=Path, help="this server's certificate")
    serve.add_argument("--key", required=True, type=Path)
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8443)
    serve.set_defaults(func=_serve)


def _fail(message: str) -> int:
    print(f"xiaodian cloud rollout: {message}", file=sys.stderr)
    return 1


def _commander(cfg: Any) -> Any:
    """A started command publisher and a Commander on it (the caller stops `.publisher`)."""
    from . import commands
    from .cli_certs import shared_certificate

    signer = commands.load_signer(cfg.commands)
    cli_id = commands.cli_publisher_id(cfg.cloud.worker_id)
    problem = shared_certificate(cfg, [cfg.cloud.worker_id, cli_id])
    if problem:
        raise ValueError(problem)
    publisher = commands.CommandPublisher(cfg.mqtt, cli_id)
    publisher.start()
    if not publisher.wait_connected(10.0):
        publisher.stop()
        raise ValueError(f"cannot connect to the broker {cfg.mqtt.host}:{cfg.mqtt.port}")
    return commands.Commander(signer, cfg.cloud.database, publisher,
                              lifetime_s=cfg.commands.lifetime_s,
                              publish_timeout_s=cfg.commands.publish_timeout_s)


def _start(args: argparse.Namespace) -> int:
    from .db import Database

    cfg = cloud_config.load(args.config)
    if not cfg.commands.enabled:
        return _fail(f"{args.config}: no [commands] section: no signed commands, no updates")
    try:  # a plan that cannot be is refused before anything is published
        rollout.plan("check", args.stores, share=args.share,
                     max_failure_ratio=args.max_failure_ratio,
                     settle_s=rollout.DEFAULT_SETTLE_S if args.settle_s is None else args.settle_s)
    except ValueError as exc:
        return _fail(str(exc))
    got = (_agent_artefact(args, cfg) if args.agent_release is not None
           else _firmware_artefact(args))
    if isinstance(got, int):
        return got
    artefact = got
    settle_s = args.settle_s if args.settle_s is not None else rollout.default_settle_s(
        artefact.kind)
    try:
        with Database.open(cfg.cloud.database) as db:
            rid = rollouts.create(db, artefact, args.stores, time.time(), share=args.share,
                                  max_failure_ratio=args.max_failure_ratio,
                                  settle_s=settle_s,
                                  created_by=f"cli:{getpass.getuser()}")
    except ValueError as exc:
        return _fail(str(exc))
    except sql.ERRORS as exc:
        return _fail(f"cannot record the rollout: {exc}")
    print(rid)
    return _tick_once(cfg, rid)


def _url(args: argparse.Namespace, sha: str) -> str:
    return f"{args.base_url.rstrip('/')}/artefacts/{sha}"


def _firmware_artefact(args: argparse.Namespace) -> rollouts.Artefact | int:
    from firmware_bridge import fwimage

    if not args.device:
        return _fail("--image needs --device: the fridge id at every store")
    raw = args.image.read_bytes()
    try:
        image = fwimage.parse(raw)
    except fwimage.ImageRefused as exc:
        return _fail(str(exc))
    if image.signature is None:
        return _fail("the image is not signed (xiaodian firmware sign)")
    sha = rollouts.publish_artefact(args.artefacts, raw)
    version = ".".join(map(str, image.manifest.version))
    return rollouts.Artefact("firmware", args.device, _url(args, sha), sha, len(raw), version)


def _agent_artefact(args: argparse.Namespace, cfg: Any) -> rollouts.Artefact | int:
    """The release checked against the pinned keys, then published; the version is the
    signed manifest's. Refused (nothing published, no rollout) when no key is pinned or the
    file is not a release signed by one of them."""
    from xiaodian import agent_release
    from xiaodian.wire.commands import AGENT_DEVICE, MAX_ARTEFACT_BYTES

    path: Path = args.agent_release
    if args.device:
        return _fail("--device names a fridge; an agent release updates the terminal itself"
                     " (leave --device out)")
    if not cfg.rollout.agent_keys:
        return _fail(f"{args.config}: no [rollout] agent_keys: the cloud trusts no "
                     "agent-signing key, so it publishes no release of the terminal's software")
    trusted = agent_release.load_public_keys(cfg.rollout.agent_keys)
    try:
        size = path.stat().st_size
        if size > MAX_ARTEFACT_BYTES:
            return _fail(f"{path}: {size} bytes, more than a store fetches "
                         f"({MAX_ARTEFACT_BYTES})")
        checked: list[agent_release.Release] = []
        sha = rollouts.publish_verified(
            args.artefacts, path, lambda copy: checked.append(
                agent_release.verify_file(copy, trusted)))
        size = rollouts.artefact_path(args.artefacts, sha).stat().st_size  # what is served
    except agent_release.ReleaseRefused as exc:
        return _fail(f"{path}: refused, {exc} (nothing published)")
    except OSError as exc:
        return _fail(f"{path}: {exc}")
    return rollouts.Artefact("agent", AGENT_DEVICE, _url(args, sha), sha, size,
                             checked[0].manifest.version)


def _tick_once(cfg: Any, rid: str) -> int:
    from .db import Database

    try:
        commander = _commander(cfg)
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    try:
        with Database.open(cfg.cloud.database) as db:
            d = rollouts.tick(db, commander, rid, time.time())
    except KeyError as exc:
        return _fail(str(exc))
    finally:
        commander.publisher.stop()
    print(f"{rid}: {d.state.value}, stage {d.stage + 1}, started {', '.join(d.start) or '-'}"
          + (f" ({d.reason})" if d.reason else ""))
    return {"running": 0, "done": 0, "halted": 3}[d.state.value]


def _tick(args: argparse.Namespace) -> int:
    return _tick_once(cloud_config.load(args.config), args.rollout)


def _watch(args: argparse.Namespace) -> int:
    from .db import Database

    cfg = cloud_config.load(args.config)
    try:
        commander = _commander(cfg)
    except (ValueError, OSError) as exc:
        return _fail(str(exc))
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            with Database.open(cfg.cloud.database) as db:
                d = rollouts.tick(db, commander, args.rollout, time.time())
            print(f"{args.rollout}: {d.state.value}, stage {d.stage + 1}, "
                  f"{d.succeeded} ok, {d.failed} failed", flush=True)
            if d.state is not rollout.State.RUNNING:
                return 0 if d.state is rollout.State.DONE else 3
            if time.monotonic() >= deadline:
                return 5
            time.sleep(args.interval)
    except KeyError as exc:
        return _fail(str(exc))
    finally:
        commander.publisher.stop()


def _status(args: argparse.Namespace) -> int:
    from xiaodian.i18n import negotiate, translator

    from .db import Database
    from .rollout_text import store_detail

    cfg = cloud_config.load(args.config)
    with Database.open_readonly(cfg.cloud.database) as db:
        found = [rollouts.summary(db, args.rollout)] if args.rollout else rollouts.recent(db)
    if args.rollout and found[0] is None:
        return _fail(f"no rollout {args.rollout!r}")
    items: list[dict[str, Any]] = [s for s in found if s is not None]
    if args.format == "json":
        print(json.dumps(items if not args.rollout else items[0], separators=(",", ":")))
        return 0
    # What the terminals said, in Chinese unless XIAODIAN_LANG=en (the codes stay codes).
    t = translator(negotiate(os.environ.get("XIAODIAN_LANG")))
    for s in items:
        print(f"{s['id']}  {s['kind']} {s['version']} -> {s['device']}  {s['state']}"
              f"  {s['succeeded']} ok, {s['failed']} failed of {s['total']}"
              f" (stages {s['stages']}, halts past {s['max_failures']})"
              + (f"  {s['reason']}" if s["reason"] else ""))
        for st in s["stores"]:
            said = store_detail(st, t)[0]
            print(f"  {st['store']}\t{st['state']}\t{st['percent']}%\t{st['outcome'] or '-'}"
                  f"\t{st['command_state'] or '-'}" + (f"\t{said}" if said else ""))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .web.artefact_server import ArtefactServer, server_context

    server = ArtefactServer(args.dir, server_context(args.ca, args.cert, args.key),
                            args.host, args.port)
    print(f"serving {args.dir} on https://{args.host}:{server.port}/artefacts/", flush=True)
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()
