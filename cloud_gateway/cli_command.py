"""`xiaodian cloud command`: sign and send one command to a store, and wait for its answer."""

from __future__ import annotations

import argparse
import json
import sys

from . import config as cloud_config
from . import sql
from .cli_audit import audit
from .cli_certs import shared_certificate


def _command(args: argparse.Namespace) -> int:
    import getpass

    from xiaodian.wire.commands import CommandError

    from . import commands
    from .db import Database

    def fail(message: str) -> int:
        print(f"xiaodian cloud command: {message}", file=sys.stderr)
        return 1

    cfg = cloud_config.load(args.config)
    if not cfg.commands.enabled:
        return fail(f"{args.config}: no [commands] section (signing_key, key_id, ...)")
    try:
        params = commands.parse_cli_params(args.action, args.params)
        signer = commands.load_signer(cfg.commands)
    except (ValueError, commands.CommandSetupError) as exc:
        return fail(str(exc))
    try:
        Database.open(cfg.cloud.database).close()  # the schema, if no worker ever ran here
    except sql.ERRORS as exc:
        return fail(f"cannot open database {sql.describe(cfg.cloud.database)}: {exc}")
    cli_id = commands.cli_publisher_id(cfg.cloud.worker_id)
    problem = shared_certificate(cfg, [cfg.cloud.worker_id, cli_id])
    if problem:
        return fail(problem)
    publisher = commands.CommandPublisher(cfg.mqtt, cli_id)
    try:
        publisher.start()
    except OSError as exc:
        return fail(str(exc))
    try:
        if not publisher.wait_connected(min(args.timeout, 10.0)):
            return fail(f"cannot connect to the broker {cfg.mqtt.host}:{cfg.mqtt.port}")
        commander = commands.Commander(
            signer, cfg.cloud.database, publisher, lifetime_s=cfg.commands.lifetime_s,
            publish_timeout_s=cfg.commands.publish_timeout_s)
        try:
            command_id = commander.issue(args.store, args.action, params,
                                         issued_by=f"cli:{getpass.getuser()}")
        except CommandError as exc:
            return fail(str(exc))
        except sql.ERRORS as exc:
            return fail(f"cannot record the command in {sql.describe(cfg.cloud.database)}: {exc}")
        with Database.open(cfg.cloud.database) as db, db.transaction() as conn:
            audit(conn, "command.send", args.store, command_id, {"action": args.action})
    finally:
        publisher.stop()
    cmd = commands.wait_settled(cfg.cloud.database, command_id, args.timeout)
    print(json.dumps(cmd, separators=(",", ":")), flush=True)
    state = cmd["state"] if cmd else "sent"
    if state == "unsent" and cmd is not None:
        print(f"xiaodian cloud command: not delivered to {args.store}: {cmd.get('reason')}",
              file=sys.stderr)
    elif state == "sent":
        print(f"xiaodian cloud command: no answer to {command_id} within {args.timeout:g} s"
              " (is a `cloud run` worker collecting answers?)", file=sys.stderr)
    return {"answered": 0, "refused": 3, "expired": 4, "unsent": 4}.get(state, 5)
