"""What `xiaodian demo` prints for a person: the banner, the live lines, the summary.

Chinese unless `--lang en`. The banner starts with what a shop owner looks at (the inbox
standing in for their phone, the login) and ends with what a technician needs (logs, data).
"""

from __future__ import annotations

from typing import Any, TextIO

from xiaodian.i18n import N_, Translator

from .inbox_page import RULES, SEVERITIES
from .retail_seed import DEMO_CLERK
from .stack import StoreStack

DOOR = {True: N_("door open"), False: N_("door closed"), None: N_("door ?")}
COMPRESSOR = {True: N_("compressor on"), False: N_("compressor off"),
              None: N_("compressor ?")}


def owner_facts(stack: StoreStack) -> dict[str, Any]:
    """Where the owner looks and how they log in (also in the --json summary)."""
    return {"inbox_url": stack.inbox_url, "login_url": stack.owner_login_url,
            "owner_page": f"{stack.http_url}owner", "user": "owner",
            "password": stack.demo_password, "technician": "technician",
            "operator": "operator", "supply_page": f"{stack.http_url}supply",
            "fleet_page": f"{stack.http_url}tech"}


def banner(stack: StoreStack, retail: dict[str, Any], t: Translator, out: TextIO,
           first_alert_s: float | None = None) -> None:
    """`first_alert_s`: when the scenario's first owner alert is due (real seconds), if known."""
    assert stack.broker is not None
    _ = t.gettext
    o = owner_facts(stack)

    def p(text: str = "", indent: int = 0) -> None:
        print(" " * indent + text, file=out)

    p(_("xiaodian demo: store %(store)s, simulated time %(speed)s times as fast")
      % {"store": stack.store, "speed": f"{stack.speed:g}"})
    p()
    p(_("== The owner =="))
    if o["inbox_url"]:
        url = o["inbox_url"] + ("?lang=en" if t.locale == "en" else "")
        p(_("Owner's phone (notice inbox): %(url)s") % {"url": url}, 2)
        p(_("The cloud's alert notices for the owner arrive here. Tap the big button to"
            " acknowledge and say what was done."), 4)
        if first_alert_s is not None:
            p(_("fridge-2 starts warm, so the first notice comes in about %(seconds)s s.")
              % {"seconds": f"{first_alert_s:.0f}"}, 4)
    p(_("Owner log-in: %(url)s") % {"url": o["login_url"]}, 2)
    p(_("name %(user)s, password %(password)s (the technician: name %(tech)s, the same"
        " password)") % {"user": o["user"], "password": o["password"],
                         "tech": o["technician"]}, 4)
    p()
    p(_("== In the shop =="))
    p(_("Shop terminal: %(url)s (fridges, alerts, buzzer)")
      % {"url": f"http://127.0.0.1:{stack.kiosk_port}/"}, 2)
    if retail:
        p(_("Counter: %(url)s (pickups, deliveries, expiring stock)")
          % {"url": retail["counter_url"]}, 2)
        for order in retail["orders"]:
            # A delivery order is handed to the courier from the delivery list, not by code.
            if order.get("pickup_code") and order["mode"] == "pickup":
                p(_("order %(id)s: pickup code %(code)s")
                  % {"id": order["id"], "code": order["pickup_code"]}, 4)
            else:
                p(_("order %(id)s: delivery (on the counter's delivery list)")
                  % {"id": order["id"]}, 4)
        p(_("Scan or type a pickup code into the counter page to hand an order over."), 4)
        p(_("A delivery from the depot is received with the counter's Receive button and"
            " signed off by the clerk %(clerk)s, PIN %(pin)s.")
          % {"clerk": DEMO_CLERK[0], "pin": DEMO_CLERK[1]}, 4)
    p(_("Cloud dashboard: %(url)s") % {"url": stack.http_url}, 2)
    residents = retail.get("residents") if retail else None
    if residents:
        p()
        p(_("== Residents =="))
        p(_("Residents' app (open it at phone size): %(url)s") % {"url": residents["url"]}, 2)
        p(_("Log in with %(phone)s; the one-time code is written to %(log)s")
          % {"phone": residents["phone"], "log": residents["code_log"]}, 4)
    if residents:
        p()
        p(_("== Supply =="))
        p(_("Order cycles, plans, pick lists, receiving and refunds: %(url)s")
          % {"url": o["supply_page"]}, 2)
        p(_("log in as %(user)s (the same password); the cutoff runs by itself, and the"
            " manifest then reaches the counter") % {"user": o["operator"]}, 4)
    p()
    p(_("== For the technician =="))
    p(_("Fleet view (devices, maintenance, firmware updates): %(url)s")
      % {"url": o["fleet_page"]}, 2)
    p(_("broker: %(url)s, log %(log)s")
      % {"url": f"mqtts://{stack.broker.host}:{stack.broker.port}",
         "log": stack.broker.log_path}, 2)
    for name, part in stack.parts.items():
        p(_("%(part)s: log %(log)s") % {"part": name, "log": part.log}, 2)
    p(_("data: %(dir)s") % {"dir": stack.workdir}, 2)
    p(_("operator API token: %(file)s") % {"file": stack.api_token_file}, 2)
    if retail:
        p(_("catalogue v%(version)s pushed (format: %(file)s); stock: %(url)s")
          % {"version": retail.get("catalogue_version", "?"),
             "file": stack.workdir / "cloud" / "catalogue.toml",
             "url": f"{stack.http_url}api/stores/{stack.store}/stock"}, 2)
        for problem in retail["problems"]:
            p(_("retail setup problem: %(problem)s") % {"problem": problem}, 2)
    p(_("Ctrl-C stops everything."))
    p()


def fmt_c(value: float | None) -> str:
    return "   --  " if value is None else f"{value:5.1f}°C"


def live_line(fridge: str, info: dict[str, Any], cloud: int, t: Translator) -> str:
    """One fridge: product/air temperature, door, compressor, stored/acknowledged/in cloud."""
    _ = t.gettext
    temps = info.get("probes", {})
    door = info.get("door")
    comp = info.get("compressor")
    stored = info.get("stored", 0)
    alerts = info.get("alerts", [])
    line = _("%(fridge)s  product %(product)s  air %(air)s  %(door)s  %(compressor)s"
             "  readings stored %(stored)s  acked %(acked)s  in cloud %(cloud)s") % {
        "fridge": f"{fridge:<10}", "product": fmt_c(temps.get(1)), "air": fmt_c(temps.get(0)),
        "door": _(DOOR[door]).ljust(len(_(DOOR[False]))),
        "compressor": _(COMPRESSOR[comp]).ljust(len(_(COMPRESSOR[False]))),
        "stored": f"{stored:>5}", "acked": f"{stored - info.get('pending', 0):>5}",
        "cloud": f"{cloud:>5}"}
    if alerts:
        line += "  " + _("ALERT %(alerts)s") % {"alerts": ", ".join(
            f"{_name(t, RULES, a['rule'])} ({_name(t, SEVERITIES, a['severity'])})"
            for a in alerts)}
    return line


def _name(t: Translator, names: dict[str, str], key: str) -> str:
    return t.gettext(names[key]) if key in names else key


def summary(s: dict[str, Any], t: Translator, out: TextIO) -> None:
    _ = t.gettext
    print("\n" + _("Summary (readings):"), file=out)
    for fridge, v in s["fridges"].items():
        print("  " + _("%(fridge)s emitted %(emitted)s  edge %(edge)s  cloud %(cloud)s  missing"
                " %(missing)s  duplicated %(duplicated)s  altered %(altered)s") % {
            "fridge": f"{fridge:<10}", "emitted": f"{v['emitted']:>5}",
            "edge": f"{v['edge_stored']:>5}", "cloud": f"{v['cloud_stored']:>5}",
            "missing": v["missing"], "duplicated": v["duplicated"], "altered": v["altered"]},
            file=out)
    print("  " + (_("all delivered exactly once") if s["ok"] else _("NOT all delivered: see logs")),
          file=out)
    inbox = s.get("inbox")
    if inbox is not None:
        n = len(inbox["notices"])
        print("  " + t.ngettext("the owner's inbox received %(n)s notice",
                                "the owner's inbox received %(n)s notices", n) % {"n": n},
              file=out)
