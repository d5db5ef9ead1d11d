"""Scan to verdict at the counter: `python -m bench.scan_to_verdict [--scans N]`.

A real edge agent (its own process, `xiaodian edge run`) with a TLS Mosquitto and the
cloud; a barcode scanner on a pseudo-terminal; the counter page in headless Chromium.
Half the scans are products (a sale: one ledger row and its outbox event, committed with
fsync), half are pickup codes for orders sent over MQTT (verified offline, handover
shown; the bench then clicks "Confirm", which is not timed).

Latency of a scan = the moment the verdict for it appears in the page (a MutationObserver
on the verdict box, `performance.timeOrigin + performance.now()`) minus the moment the
bench wrote the scan line to the scanner's pty (`time.time()`), both on this host's clock.
It covers the serial read, line split, SQLite commit of the scan event, the verdict, its
commit, the page's long poll and the DOM update.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import (
    STORE,
    BenchError,
    broker_and_cloud,
    check_figures,
    edge_config,
    make_pki,
    mqtt_settings,
    note,
    start_edge,
    stop_child,
    wait_for,
)
from devstack.testkit.edge import free_port, pty_link
from devstack.testkit.mqtt_clients import start_client, stop_client
from edge.config import PickupSettings
from xiaodian.wire.pickup import PickupCodec
from xiaodian.wire.retail import (
    Catalogue,
    CatalogueItem,
    Order,
    OrderLine,
    catalogue_payload,
    order_payload,
)

CHROMIUM = "/usr/bin/chromium"
KEY = bytes(range(7, 39))
MILK = "06901234567892"
OBSERVER = """() => {
  window.__verdicts = [];
  new MutationObserver(() => {
    const box = document.getElementById("verdict");
    const seq = box.dataset.seq;
    const last = window.__verdicts[window.__verdicts.length - 1];
    if (!last || last.seq !== seq) {
      window.__verdicts.push({seq, t: performance.timeOrigin + performance.now(),
                              title: document.getElementById("verdict-title").textContent,
                              reason: box.dataset.reason});
    }
  }).observe(document.getElementById("verdict"),
             {attributes: true, childList: true, subtree: true});
}"""


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", type=int, default=200)
    ap.add_argument("--smoke", action="store_true",
                    help="quick check (~15 s): 10 scans; exits 1 unless both kinds give "
                    "latencies")
    args = ap.parse_args(argv)
    if args.smoke:
        args.scans = 10
    if not os.path.exists(CHROMIUM):
        raise BenchError(f"{CHROMIUM} missing (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        d = Path(tmp)
        pki = make_pki(d / "pki")
        with broker_and_cloud(d, pki) as (broker, _cloud):
            store_mqtt = mqtt_settings(broker.host, broker.port, pki, STORE)
            cloud_mqtt = mqtt_settings(broker.host, broker.port, pki, "cloud-gateway")
            master = pty_link(d / "scanner")
            key = d / "pickup.key"
            key.write_text(KEY.hex())
            key.chmod(0o600)  # the terminal refuses a key others may read
            port = free_port()
            cfg = edge_config(d / "edge", store_mqtt, scanners=[("scanner-1", d / "scanner")],
                              pickup=PickupSettings(d / "pickup.key"), kiosk_port=port)
            pub = start_client(cloud_mqtt, "bench-orders")
            pub.publish(f"xd/v1/{STORE}/catalogue", catalogue_payload(Catalogue(STORE, 1, (
                CatalogueItem(MILK, "Milk 1L", "piece", 7, "chilled"),))), qos=1,
                retain=True).wait_for_publish(10)
            agent = start_edge(cfg, d / "edge.toml", d / "edge.log")
            try:
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox", "--disable-gpu"])
                    page = browser.new_page()
                    wait_for(lambda: _up(page, port), 30, "the counter page")
                    # The agent's session must exist before orders are sent to it.
                    page.wait_for_selector("#net.on", timeout=30000)
                    time.sleep(1.0)
                    now = time.time()
                    n_orders = args.scans // 2
                    for oid in range(1, n_orders + 1):
                        pub.publish(f"xd/v1/{STORE}/orders", order_payload(Order(
                            oid, STORE, "pickup", f"Customer {oid}", now, now + 3600,
                            (OrderLine(MILK, 1),))), qos=1).wait_for_publish(10)
                    page.wait_for_function(
                        f"document.querySelectorAll('#orders li[data-order]').length"
                        f" >= {n_orders}", timeout=60000)
                    page.evaluate(OBSERVER)
                    codec = PickupCodec(STORE, KEY)
                    product, pickup = [], []
                    for i in range(args.scans):
                        is_pickup = i % 2 == 1
                        line = ("]Q1" + codec.issue(i // 2 + 1, now + 3600) if is_pickup
                                else "]E06901234567892")
                        seen = page.evaluate("window.__verdicts.length")
                        t_write = time.time()
                        os.write(master, line.encode() + b"\r\n")
                        page.wait_for_function(f"window.__verdicts.length > {seen}",
                                               polling="raf", timeout=10000)
                        v = page.evaluate(f"window.__verdicts[{seen}]")
                        ms = v["t"] - t_write * 1000
                        if is_pickup:
                            if not v["title"].startswith(f"Order {i // 2 + 1}:"):
                                raise BenchError(f"pickup scan {i}: verdict {v['title']!r}")
                            pickup.append(ms)
                            page.click("#confirm")
                            page.wait_for_selector("#verdict-title:has-text('picked up')")
                        else:
                            if v["reason"] == "below_zero":
                                # Milk was never received: the first sale asks why, once.
                                page.click("#below-zero button[data-reason='miscounted']")
                                page.wait_for_selector("#verdict-title:has-text('Sale')")
                                v["title"] = "Sale (after the question)"
                            if not v["title"].startswith("Sale"):
                                raise BenchError(f"product scan {i}: verdict {v['title']!r}")
                            product.append(ms)
                    browser.close()
            finally:
                code = stop_child(agent)
                stop_client(pub)
                os.close(master)
            if code:
                raise BenchError(f"edge agent exited with {code}; see its log")
    both = product + pickup
    note(f"scan to verdict, {len(both)} scans ({len(product)} product sales, "
         f"{len(pickup)} pickup codes), serial pty -> agent -> counter page in Chromium")
    for name, vals in (("product (sale)", product), ("pickup code", pickup), ("all", both)):
        if not vals:
            note(f"  {name:15s} no scan")
            continue
        note(f"  {name:15s} p50 {percentile(vals, 50):6.1f} ms   p99 {percentile(vals, 99):6.1f} ms"
             f"   max {max(vals):6.1f} ms   mean {statistics.fmean(vals):6.1f} ms")
    if not args.smoke:
        return 0
    return check_figures([(f"{name} p50 ms", percentile(vals, 50) if vals else None)
                          for name, vals in (("product", product), ("pickup", pickup))])


def _up(page: object, port: int) -> bool:
    try:
        # English: the verdict titles checked below are the English ones.
        page.goto(f"http://127.0.0.1:{port}/counter?lang=en")  # type: ignore[attr-defined]
        return True
    except Exception:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
