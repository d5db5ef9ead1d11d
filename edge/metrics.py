"""The terminal's metrics in Prometheus text format, on loopback only (issue #16 point 6).

The agent renders them from what it already counts each time it reports its status (every
few seconds: `Agent.report_status`); a small HTTP server thread serves the latest text at
`http://127.0.0.1:PORT/metrics`. Loopback only, and not configurable: the numbers need no
login, and a collector on the terminal (node_exporter's textfile, a local agent) or an SSH
tunnel reaches them; the shop's network does not.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from xiaodian.metrics_text import CONTENT_TYPE, Family

log = logging.getLogger(__name__)

LINK_ERRORS = ("crc_errors", "cobs_errors", "length_errors", "version_errors", "oversize")


def families(agent: Mapping[str, Any], uplink: Mapping[str, Any],
             outbox: Mapping[str, Mapping[str, int]], links: Mapping[str, Mapping[str, Any]],
             alerts: Sequence[str], disk_bytes: int) -> list[Family]:
    """`agent`: its counters (stored, duplicates, confirmed, republished); `uplink`: the
    uplink's counters and `connected`; `outbox`: store.counts(); `links`: each reader's
    stats(); `alerts`: the severities of the active alerts."""
    out = [Family(f"xiaodian_edge_{name}_total", "counter", text).add(agent.get(name))
           for name, text in (
               ("stored", "Records committed to the terminal's database."),
               ("duplicates", "Records a device sent again, stored once."),
               ("confirmed", "Records the cloud confirmed (they left the outbox)."),
               ("republished", "Records sent again because the cloud had not confirmed them."))]
    out += [Family(f"xiaodian_edge_uplink_{name}_total", "counter", text).add(uplink.get(name))
            for name, text in (("connects", "Connections to the broker."),
                               ("published", "Messages published."),
                               ("acked", "Messages the broker acknowledged."),
                               ("receipts", "Receipts from the cloud."))]
    out.append(Family("xiaodian_edge_uplink_connected", "gauge",
                      "1 while connected to the broker.").add(bool(uplink.get("connected"))))
    pending = Family("xiaodian_edge_outbox_pending", "gauge",
                     "Records waiting for the cloud's confirmation, by kind.")
    for kind in ("readings", "events"):
        pending.add(sum(c.get(f"{kind}_pending", 0) for c in outbox.values()), kind=kind)
    out.append(pending)
    out.append(Family("xiaodian_edge_disk_used_bytes", "gauge",
                      "Bytes the terminal's database uses.").add(disk_bytes))
    active = Family("xiaodian_edge_alerts_active", "gauge", "Active cold-chain alerts.")
    for severity in ("warning", "critical"):
        active.add(sum(s == severity for s in alerts), severity=severity)
    out.append(active)
    frames = Family("xiaodian_edge_link_frames_total", "counter",
                    "Serial frames decoded whole, per device.")
    errors = Family("xiaodian_edge_link_errors_total", "counter",
                    "Serial frames spoilt (CRC, COBS, length, version, oversize), per device.")
    missed = Family("xiaodian_edge_link_missed_frames_total", "counter",
                    "Serial frames lost (sequence gaps), per device.")
    reconnects = Family("xiaodian_edge_link_reconnects_total", "counter",
                        "Times the serial port was opened again, per device.")
    for device, s in sorted(links.items()):
        if "frames_ok" in s:
            frames.add(s["frames_ok"], device=device)
            errors.add(sum(int(s.get(k, 0) or 0) for k in LINK_ERRORS), device=device)
            missed.add(s.get("missed_frames", 0), device=device)
        reconnects.add(s.get("reconnects", 0), device=device)
    return [*out, frames, errors, missed, reconnects]


class MetricsServer:
    """Serves the latest rendered text on 127.0.0.1:`port` (0: any free port)."""

    def __init__(self, port: int) -> None:
        self._text = b"# no metrics yet\n"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = server._text
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("metrics: " + format, *args)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="edge-metrics",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def publish(self, text: str) -> None:
        self._text = text.encode()  # one assignment: the server thread sees old or new

    def close(self) -> None:
        if self.thread.is_alive():  # shutdown() waits for a serve_forever that never ran
            self.httpd.shutdown()
        self.httpd.server_close()
