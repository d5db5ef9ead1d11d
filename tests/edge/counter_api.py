"""The counter page's HTTP API as the page uses it, and the store the smart-fridge lane tests
(test_retail_lanes, test_retail_restart) set up behind it: its pickup key and items."""

from __future__ import annotations

from typing import Any

from devstack.testkit.http_client import get, post

STORE = "store-001"
KEY = bytes(range(50, 82))
MILK = "06901234567892"
EGGS = "06901234567809"


class Counter:
    """The counter page's HTTP API, as the page uses it."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api/counter"

    # The words these tests compare are the English ones (?lang=en); the Chinese page is
    # tested in test_counter_terminal.
    def post(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        r = post(f"{self.base}/{action}?lang=en", body, timeout=15)
        assert r.status == 200, (r.status, r.body)
        return dict(r.json())

    def state(self) -> dict[str, Any]:
        r = get(f"{self.base}?since=-1&lang=en", timeout=15)
        assert r.status == 200, (r.status, r.body)
        return dict(r.json())
