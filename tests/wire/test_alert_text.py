"""xiaodian.wire.alert_text: an alert's reason and numbers in words, zh-CN and English."""

from __future__ import annotations

import pytest

from xiaodian.i18n import translator
from xiaodian.wire.alert_text import describe, describe_end, duration, rule_name

ZH, EN = translator("zh_CN"), translator("en")


def test_a_cumulative_hot_in_both_languages() -> None:
    data = {"reason": "hot_cumulative", "value_c": 6.04, "limit_c": 5.0,
            "cumulative_s": 14460.0, "window_s": 86400.0}
    msg = describe("hot", data)
    assert str(msg) == "product 6.0 °C; above 5 °C for 4 h 1 min in the last 24 h"
    assert EN.render(msg) == str(msg)
    assert ZH.render(msg) == "产品 6.0 °C；最近 24 小时内累计高于 5 °C 达 4 小时 1 分钟"
    assert ZH.render(rule_name("hot")) == "温度过高"


@pytest.mark.parametrize(("rule", "data", "zh"), [
    ("door", {"reason": "door_open", "for_s": 180.0, "buzzer": True},
     "门已开 3 分钟（收银台蜂鸣提醒）"),
    ("mains", {"reason": "mains_lost", "for_s": 0.0}, "停电"),
    ("probe_fault", {"reason": "probe_fault", "probe": "air", "fault": "jump",
                     "from_c": 3.0, "value_c": 9.5}, "空气探头读数从 3.0 °C 跳到 9.5 °C"),
    ("cycling", {"reason": "no_cycling", "for_s": 13020.0, "settled_s": 4800.0,
                 "usual_cycle_s": 2400.0, "compressor_on": True},
     "压缩机已连续运行 3 小时 37 分钟未停机（其中关门且稳定 1 小时 20 分钟），"
     "平时一个周期 40 分钟"),
])
def test_reasons_render_in_chinese(rule: str, data: dict[str, object], zh: str) -> None:
    assert ZH.render(describe(rule, data, strict=True)) == zh


def test_how_it_ended_with_its_duration_and_peak() -> None:
    data = {"reason": "warm", "value_c": 6.0, "limit_c": 5.0, "for_s": 1800.0,
            "end": "back_below", "end_value_c": 3.0, "end_limit_c": 4.0, "end_for_s": 600.0,
            "active_s": 3600.0, "peak_c": 6.04}
    end = describe_end("warm", data)
    assert end is not None
    assert str(end) == "product 3.0 °C, below 4 °C for 10 min; was active for 1 h, peak 6.0 °C"
    assert ZH.render(end) == "产品 3.0 °C，低于 4 °C 已 10 分钟；告警持续了 1 小时，最高 6.0 °C"
    assert describe_end("warm", {"reason": "warm"}) is None  # not cleared: no end


def test_unreadable_data_gets_generic_words_or_a_strict_error() -> None:
    # An older agent (no reason), an unknown reason, a missing number.
    for data in ({}, {"reason": "martian"}, {"reason": "warm", "value_c": 6.0}):
        assert ZH.render(describe("warm", data)) == "冰箱报警：温度偏高"
        with pytest.raises(ValueError, match="warm"):
            describe("warm", data, strict=True)
    assert str(describe("x", {})) == "Fridge alert: Alert x"
    assert ZH.render(duration(45)) == "45 秒" and str(duration(7200)) == "2 h"
