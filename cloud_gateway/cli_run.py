"""`xiaodian cloud run`: the ingest worker, the HTTP API, the downlink, the alert sender, the
supply tick and the residents' notice sender."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

from . import config as cloud_config
from . import sql
from .cli_certs import shared_certificate


def _run(args: argparse.Namespace) -> int:
    from . import commands
    from .downlink import DownlinkSender
    from .ingest import IngestWorker
    from .rollouts import RolloutTicker
    from .web import Api, HttpServer

    cfg = cloud_config.load(args.config)
    commander: commands.Commander | None = None
    publisher: commands.CommandPublisher | None = None
    token: bytes | None = None
    if cfg.commands.enabled:
        assert cfg.commands.api_token_file is not None  # enabled: all three are set
        try:
            signer = commands.load_signer(cfg.commands)
            token = commands.load_api_token(cfg.commands.api_token_file)
        except commands.CommandSetupError as exc:
            print(f"xiaodian cloud: refusing to start: {exc}", file=sys.stderr)
            return 1
        publisher = commands.CommandPublisher(
            cfg.mqtt, commands.default_publisher_id(cfg.cloud.worker_id))
        commander = commands.Commander(
            signer, cfg.cloud.database, publisher, lifetime_s=cfg.commands.lifetime_s,
            publish_timeout_s=cfg.commands.publish_timeout_s)
    # Checked before any connection is made (the secrets above are checked first).
    worker_id = cfg.cloud.worker_id
    ids = [worker_id, commands.downlink_publisher_id(worker_id)]
    if cfg.commands.enabled:
        ids.append(commands.default_publisher_id(worker_id))
    problem = shared_certificate(cfg, ids)
    if problem:
        print(f"xiaodian cloud: refusing to start: {problem}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        alerts = _alert_service(cfg)
    except commands.CommandSetupError as exc:
        print(f"xiaodian cloud: refusing to start: {exc}", file=sys.stderr)
        return 1
    worker = IngestWorker(cfg.mqtt, cfg.cloud, alerts=alerts)
    try:
        worker.start()
    except sql.ERRORS as exc:
        print(f"xiaodian cloud: cannot open database {sql.describe(cfg.cloud.database)}:"
              f" {exc}", file=sys.stderr)
        return 1
    # Orders and catalogues: a publisher of their own, and a thread that retries them.
    down_pub = commands.CommandPublisher(
        cfg.mqtt, commands.downlink_publisher_id(cfg.cloud.worker_id))
    downlink = DownlinkSender(cfg.cloud.database, down_pub, retry_s=cfg.cloud.downlink_retry_s,
                              resend_open_s=cfg.cloud.order_resend_s)
    try:
        if publisher is not None:
            publisher.start()
        down_pub.start()
        server = HttpServer(Api(cfg.cloud.database, worker.status, commander=commander,
                                api_token=token,
                                alert_link_secret=alerts.link_secret if alerts else None,
                                downlink=downlink, pickup_keys_dir=cfg.pickup.keys_dir,
                                pickup_key_id=cfg.pickup.key_id),
                            cfg.cloud.http_host, cfg.cloud.http_port)
    except OSError as exc:  # also a missing TLS file for the publisher
        worker.stop()
        if publisher is not None:
            publisher.stop()
        down_pub.stop()
        print(f"xiaodian cloud: cannot listen on {cfg.cloud.http_host}:{cfg.cloud.http_port}:"
              f" {exc.strerror or exc}", file=sys.stderr)
        return 1
    exit_code = 0
    if alerts is not None:
        alerts.start()
    downlink.start()
    # Staged updates go on (and halt) by themselves while the cloud runs (rollouts.py).
    ticker = RolloutTicker(cfg.cloud.database, commander) if commander is not None else None
    if ticker is not None:
        ticker.start()
    helpers = _supply_threads(cfg)
    for h in helpers:
        h.start()
    with server:
        print(server.url, flush=True)
        # The short wait keeps signal delivery prompt and lets us notice a dead worker.
        while not stop.wait(0.5):
            if not worker.alive():
                print("xiaodian cloud: ingest worker died; see the log", file=sys.stderr)
                exit_code = 1
                break
        if ticker is not None:
            ticker.stop()
        worker.stop()
        for h in helpers:
            h.stop()
        downlink.stop()
        down_pub.stop()
        if alerts is not None:
            alerts.stop()
        if publisher is not None:
            publisher.stop()
    return exit_code


def _supply_threads(cfg: cloud_config.CloudConfig) -> list[Any]:
    """The supply tick (cutoffs, reminders) and the residents' notice sender, as configured."""
    from .resident_notice_sender import NoticeSender
    from .supply.scheduler import SupplyScheduler

    out: list[Any] = []
    if cfg.supply.scheduler:
        out.append(SupplyScheduler(cfg.supply, cfg.cloud.database, cfg.cloud.worker_id))
    if cfg.resident_notices.enabled:
        out.append(NoticeSender(cfg.resident_notices, cfg.cloud.database, cfg.cloud.worker_id))
    return out


def _alert_service(cfg: cloud_config.CloudConfig) -> Any:
    """The alert sender, if `[alerts]` names contacts; secrets are checked like the token."""
    from .alerts.notifier import AlertService
    from .commands import load_api_token

    a = cfg.alerts
    if a.link_secret_file is None:
        return None
    secrets = {f"{st.store}/{c.name}": load_api_token(c.webhook_secret_file)
               for st in a.stores for c in st.contacts if c.webhook_secret_file is not None}
    host = f"[{cfg.cloud.http_host}]" if ":" in cfg.cloud.http_host else cfg.cloud.http_host
    return AlertService(a, cfg.cloud.database, cfg.cloud.worker_id,
                        link_secret=load_api_token(a.link_secret_file),
                        webhook_secrets=secrets,
                        public_url=f"http://{host}:{cfg.cloud.http_port}/")
