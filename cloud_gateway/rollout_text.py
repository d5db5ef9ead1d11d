"""A rollout as the technician reads it on the fleet page, in the reader's words: the
states of cloud_gateway/rollout.py and of the store's `update` reports, the result codes
(FW_RESULT names and fetch failures); an unknown (newer) code is shown as it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xiaodian.i18n import N_, Translator

ROLLOUT_STATES = {"running": N_("In progress"), "halted": N_("Halted by itself"),
                  "done": N_("Done")}
STORE_STATES = {"idle": N_("Waiting"), "downloading": N_("Downloading"),
                "downloaded": N_("Downloaded"), "updating": N_("Updating"),
                "done": N_("Finished")}
RESULTS = {
    "confirmed": N_("confirmed, running the new version"),
    "rolled_back": N_("rolled back to the old version"),
    "timeout": N_("no answer in time"),
    "bad_signature": N_("refused: not signed by a trusted key"),
    "device_bad_signature": N_("refused by the fridge: not signed by a key it trusts"),
    "bad_hash": N_("refused: damaged image"),
    "downgrade": N_("refused: not newer than what runs"),
    "wrong_hardware": N_("refused: for other hardware"),
    "agent_too_old": N_("refused: the terminal's software is too old"),
    "download_failed": N_("download failed"),
    "tls_failed": N_("download refused: certificate check failed"),
    "unsent": N_("not delivered: the terminal takes no commands"),
    "expired": N_("not delivered in time"),
    "unknown_device": N_("no such fridge at this store"),
    "busy": N_("another update was running"),
}


def _code(table: Mapping[str, str], code: Any, t: Translator) -> str:
    return t.gettext(table[code]) if code in table else str(code)


def describe(summary: Mapping[str, Any], t: Translator) -> dict[str, Any]:
    """The words for one rollout summary (rollouts.summary): its state, why it halted,
    and each store's state and result."""
    stores = summary["stores"]
    why = ""
    if summary["state"] == "halted":
        first = stores[0] if stores else None
        # as rollout.decide: the canary's failure is the reason before any count
        canary_failed = first is not None and (
            first["result"] not in ("", "confirmed") or first["command_state"] in
            ("refused", "expired", "unsent"))
        why = (t.gettext("The first store failed, so no other store was sent it.")
               if canary_failed else t.gettext("%(failed)s stores failed; at most %(max)s may.")
               % {"failed": summary["failed"], "max": summary["max_failures"]})
    rows = []
    for s in stores:
        result = s["result"] or (s["command_state"] if s["command_state"] in
                                 ("refused", "expired", "unsent") else "")
        rows.append({**s, "state_text": _code(STORE_STATES, s["state"], t),
                     "result_text": _code(RESULTS, result, t) if result else "",
                     "failed": bool(result) and result != "confirmed"})
    return {"state_text": _code(ROLLOUT_STATES, summary["state"], t), "why": why,
            "rows": rows}
