"""One certificate per broker connection: the check the cloud's commands make first."""

from __future__ import annotations

from pathlib import Path

from . import config as cloud_config


def shared_certificate(cfg: cloud_config.CloudConfig, client_ids: list[str]) -> str | None:
    """Why these connections cannot run side by side, or None.

    The broker makes each client id its certificate's CN, so two connections presenting
    one certificate would take over each other's session, and a publisher's clean start
    would wipe the worker's queued messages. Each id needs `<id>.<ext>` beside the
    configured certificate (TlsSettings.for_client).
    """
    seen: dict[Path, str] = {}
    for client_id in client_ids:
        cert = cfg.mqtt.tls.for_client(client_id).cert
        if cert in seen:
            wanted = cert.with_name(client_id + cert.suffix)
            return (f"connections {seen[cert]!r} and {client_id!r} would both use {cert}:"
                    f" issue a certificate for {client_id!r} (xiaodian pki issue-service"
                    f" {client_id}) and put it, with its key, at {wanted}")
        seen[cert] = client_id
    return None
