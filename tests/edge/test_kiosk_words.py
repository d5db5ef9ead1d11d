"""The terminal's pages and API speak the reader's language: zh-CN unless `?lang=en`
(remembered in a cookie), times in the store's zone, alert texts through one function."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from edge.kiosk import Kiosk
from edge.words import Clock, Day, Grams, Money, Sentences, alert_text, localize
from xiaodian.i18n import N_, Message, translator

T = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC


@pytest.fixture
def kiosk() -> Iterator[Kiosk]:
    k = Kiosk("127.0.0.1", 0, tz="Europe/Berlin")
    k.start()
    k.update_counter({"verdict": {"seq": 1, "title": Message(N_("Not done")),
                                  "message": Message(N_("Order %(order)s, due by %(when)s."),
                                                     {"order": 7, "when": Clock(T)})},
                      "alerts": [{"id": "a", "fridge": "fridge-1", "rule": "hot",
                                  "severity": "critical", "message": "product 9.0 °C",
                                  "data": {}, "since": T}]})
    yield k
    k.close()


def get(k: Kiosk, path: str, cookie: str | None = None) -> tuple[int, str, str | None]:
    port = k.server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Cookie": cookie} if cookie else {}
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    out = resp.status, resp.read().decode(), resp.getheader("Set-Cookie")
    conn.close()
    return out


def test_chinese_by_default_english_on_request_and_remembered(kiosk: Kiosk) -> None:
    status, body, cookie = get(kiosk, "/api/counter?since=-1")
    view = json.loads(body)
    assert status == 200 and cookie is None
    assert view["verdict"]["title"] == "未完成"
    # Berlin (the store's zone here, CEST): 22:26, not 20:26 UTC nor 04:26 in Shanghai.
    assert view["verdict"]["message"] == "订单 7，取货截止 22:26。"
    assert view["alerts"][0]["severity_text"] == "严重"
    assert view["alerts"][0]["since_text"] == "自 22:26 起"
    _, body, _ = get(kiosk, "/api/counter?since=-1&lang=en")  # (a script may ask per call)
    assert json.loads(body)["verdict"]["title"] == "Not done"
    _, page, cookie = get(kiosk, "/counter?lang=en")  # the page remembers it
    assert '<html lang="en">' in page and cookie is not None
    assert cookie.startswith("lang=en;") and "SameSite=Strict" in cookie
    _, body, _ = get(kiosk, "/api/counter?since=-1", cookie="lang=en")
    assert json.loads(body)["verdict"]["message"] == "Order 7, due by 10:26\u202fPM."
    _, page, _ = get(kiosk, "/counter")
    assert '<html lang="zh-CN">' in page and "<title>柜台</title>" in page
    _, page, cookie = get(kiosk, "/?lang=en")
    assert '<html lang="en">' in page and cookie is not None
    _, page, _ = get(kiosk, "/", cookie="lang=zh-CN")
    assert "<title>冰箱</title>" in page
    _, page, _ = get(kiosk, "/", cookie="lang=\x7f;;bad")  # a broken cookie: Chinese
    assert '<html lang="zh-CN">' in page


def test_values_are_formatted_for_the_reader() -> None:
    zh, en = translator("zh_CN"), translator("en")
    value = {"a": [Money(1990), Grams(1250), Day("2026-12-08"), Day("someday")],
             "b": Sentences((Message(N_("Nothing was scanned.")),
                             Message(N_("Scan the item again.")))),
             "c": ("plain", 3, None)}
    assert localize(value, zh, "Asia/Shanghai") == {
        "a": ["¥19.90", "1.250\u00a0kg", "12月8日", "someday"],
        "b": "没有扫到内容。请重新扫描商品。", "c": ["plain", 3, None]}
    assert localize(value, en, "Asia/Shanghai")["b"] == "Nothing was scanned. Scan the item again."
    # Until the alert catalogue lands, an alert's text is its message as the rules wrote it.
    assert alert_text({"message": "product 9.0 °C", "rule": "hot"}, zh) == "product 9.0 °C"


def test_a_kiosk_refuses_a_time_zone_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="tz"):
        Kiosk("127.0.0.1", 0, tz="Asia/Atlantis")
