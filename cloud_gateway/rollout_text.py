"""A rollout as the technician reads it on the fleet page, in the reader's words: what is
rolled out (a fridge's firmware, or the terminal's own software), the states of
cloud_gateway/rollout.py and of the store's `update` reports, the result codes (FW_RESULT
names, the agent release's refusals, fetch failures) with what the store said of it: its
reason codes (xiaodian.wire.update_reasons) in the reader's words, or, from a terminal that
sends none, its free-text detail marked as its own words. An unknown (newer) result code is
shown as it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xiaodian.i18n import N_, Translator
from xiaodian.wire import update_reasons

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
    "bad_size": N_("download refused: wrong size"),
    "insecure_url": N_("download refused: not HTTPS"),
    "bad_request": N_("download refused: the command's hash or size is malformed"),
    "io_error": N_("the terminal could not write or read the file"),
    "refused": N_("the terminal refused the command"),
    "unsupported": N_("refused: this terminal cannot install this kind of update"),
    "failed": N_("failed"),
}
# The terminal's own software (kind "agent", xiaodian/agent_release.py): where its codes
# differ from a fridge's or mean something else there.
AGENT_RESULTS = RESULTS | {
    "rolled_back": N_("rolled back: the new version was not healthy, the old one runs"),
    "bad_hash": N_("refused: damaged release file"),
    "bad_format": N_("refused: not a release file"),
    "bad_version": N_("refused: not a release version"),
    "wrong_platform": N_("refused: built for another system or Python"),
    "io_error": N_("the terminal could not write the release"),
}


def _code(table: Mapping[str, str], code: Any, t: Translator) -> str:
    return t.gettext(table[code]) if code in table else str(code)


def store_detail(row: Mapping[str, Any], t: Translator) -> tuple[str, bool]:
    """What a store's terminal said of its result (rollouts.store_rows) and whether that is
    its own words: its reasons rendered ("未连接云端；未读到冰箱数据：fridge-1"), else its
    detail behind 终端原文 (an older terminal, a refusal's free text, a fridge's)."""
    reasons = row.get("reasons")
    if reasons is not None:  # checked by rollouts.store_rows
        sep = "；" if t.lang == "zh-CN" else "; "
        return sep.join(t.render(update_reasons.describe(r))
                        for r in update_reasons.parse_reasons(reasons)), False
    if row.get("detail"):
        return t.gettext("Terminal's own words: %(text)s") % {"text": row["detail"]}, True
    return "", False


def title(summary: Mapping[str, Any], t: Translator) -> str:
    """What is rolled out: "终端软件 1.1.0", or a fridge's firmware version."""
    if summary["kind"] == "agent":
        return t.gettext("Terminal software %(v)s") % {"v": summary["version"]}
    return t.gettext("Version %(v)s to %(device)s") % {"v": summary["version"],
                                                       "device": summary["device"]}


def describe(summary: Mapping[str, Any], t: Translator) -> dict[str, Any]:
    """The words for one rollout summary (rollouts.summary): what it rolls out, its state,
    why it halted, and each store's state and result (with what the store said of it,
    `store_detail`)."""
    stores = summary["stores"]
    results = AGENT_RESULTS if summary["kind"] == "agent" else RESULTS
    why = ""
    if summary["state"] == "halted":
        first = stores[0] if stores else None
        # as rollout.decide: the canary's failure is the reason before any count
        canary_failed = first is not None and first["outcome"] not in ("", "confirmed")
        why = (t.gettext("The first store failed, so no other store was sent it.")
               if canary_failed else t.gettext("%(failed)s stores failed; at most %(max)s may.")
               % {"failed": summary["failed"], "max": summary["max_failures"]})
    rows = []
    for s in stores:
        result = s["outcome"]  # rollouts.store_rows: the same code the rollout counts
        detail_text, own_words = store_detail(s, t)
        rows.append({**s, "state_text": _code(STORE_STATES, s["state"], t),
                     "result_text": _code(results, result, t) if result else "",
                     "detail_text": detail_text, "own_words": own_words,
                     "failed": bool(result) and result != "confirmed"})
    return {"title": title(summary, t), "state_text": _code(ROLLOUT_STATES, summary["state"], t),
            "why": why, "rows": rows}
