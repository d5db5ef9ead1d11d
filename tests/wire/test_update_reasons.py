"""The reasons of the terminal's own update (xiaodian/wire/update_reasons.py): every code
read back as written, worded in English (the helper's `detail`) and in Chinese (the pages),
and hostile input refused with the field at fault, never anything but a PayloadError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xiaodian.i18n import translator
from xiaodian.wire import update_reasons as ur
from xiaodian.wire.payloads import PayloadError

# One of each code, as the helper and the agent write them.
EVERY: list[dict[str, Any]] = [
    {"code": "not_healthy_within", "window_s": 180},
    {"code": "restarted", "times": 2},
    {"code": "no_statement"},
    {"code": "wrong_version", "version": "1.0.0", "expected": "1.1.0"},
    {"code": "wrong_pid", "pid": 41, "main_pid": 42},
    {"code": "wrong_pid", "pid": None, "main_pid": 42},
    {"code": "no_fresh_statement"},
    {"code": "stale_statement", "age_s": 45},
    {"code": "not_ready"},
    {"code": "not_connected"},
    {"code": "devices_not_read", "devices": ["fridge-1", "fridge-2"]},
    {"code": "outbox_not_moving"},
    {"code": "watch_failed"},
    {"code": "kept_after_restart"},
    {"code": "interrupted"},
    {"code": "never_taken"},
    {"code": "no_verdict", "state": "trial"},
    {"code": "no_verdict", "state": ""},
]
ZH = translator("zh_CN")


def test_every_code_reads_back_as_written_and_is_worded_in_both_languages() -> None:
    assert {d["code"] for d in EVERY} == ur.CODES  # a new code gets a line here
    reasons = ur.parse_reasons(json.loads(json.dumps(EVERY)))
    assert ur.reasons_data(reasons) == EVERY
    for r in reasons:
        english, chinese = str(ur.describe(r)), ZH.render(ur.describe(r))
        assert english and chinese != english, (r, chinese)  # translated, not passed through
        assert "%(" not in english + chinese
    assert ur.english(reasons[:3]) == ("not healthy within 180 s; restarted by systemd 2 "
                                       "time(s) (crash or watchdog); no health statement")


@pytest.mark.parametrize(("data", "words"), [
    ({"code": "not_connected"}, "未连接云端"),
    ({"code": "devices_not_read", "devices": ["fridge-1"]}, "未读到冰箱数据：fridge-1"),
    ({"code": "restarted", "times": 2}, "被 systemd 重启了 2 次（崩溃或看门狗）"),
    ({"code": "not_healthy_within", "window_s": 180}, "180 秒内未恢复正常运行"),
    ({"code": "stale_statement", "age_s": 45}, "健康状态报告已 45 秒未更新（主循环卡住）"),
    ({"code": "no_verdict", "state": "trial"}, "更新助手没有给出结论（最后状态：试运行中）"),
    ({"code": "wrong_pid", "pid": None, "main_pid": 7},
     "健康状态报告来自进程 无，而服务的主进程是 7"),
])
def test_chinese_words(data: dict[str, Any], words: str) -> None:
    (reason,) = ur.parse_reasons([data])
    assert ZH.render(ur.describe(reason)) == words


def test_absent_reasons_are_none_not_an_error() -> None:
    """An older terminal's report, or a refusal: only the free-text detail."""
    assert ur.reasons_of({"result": "rolled_back", "detail": "fridge-1 not read"}) is None
    assert ur.reasons_of({"reasons": []}) == ()


@pytest.mark.parametrize(("value", "where"), [
    ({"code": "not_connected"}, "data.reasons: expected `array`, got `object`"),
    ("not_connected", "data.reasons: expected `array`"),
    (None, "data.reasons: expected `array`, got `null`"),
    ([["not_connected"]], "data.reasons[0]: expected `object`"),
    ([{}], "data.reasons[0].code: missing"),
    ([{"code": "from_a_newer_terminal"}], "data.reasons[0].code: invalid value"),
    ([{"code": 1}], "data.reasons[0].code"),
    ([{"code": "not_connected", "extra": 1}], "data.reasons[0].extra: unknown field"),
    ([{"code": "restarted"}], "data.reasons[0].times: missing"),
    ([{"code": "restarted", "times": 0}], "data.reasons[0].times: expected `int` >= 1"),
    ([{"code": "restarted", "times": True}], "data.reasons[0].times: expected `int`, got `bool`"),
    ([{"code": "restarted", "times": 2.0}], "data.reasons[0].times: expected `int`"),
    ([{"code": "restarted", "times": "2"}], "data.reasons[0].times: expected `int`"),
    ([{"code": "restarted", "times": 2**70}], "data.reasons[0].times"),
    ([{"code": "stale_statement", "age_s": -1}], "data.reasons[0].age_s"),
    ([{"code": "not_healthy_within", "window_s": 1e9 + 1}], "data.reasons[0].window_s"),
    ([{"code": "devices_not_read", "devices": []}], "data.reasons[0].devices: expected `array` "
                                                    "of length >= 1"),
    ([{"code": "devices_not_read", "devices": ["fridge-1\n"]}], "data.reasons[0].devices[0]"),
    ([{"code": "devices_not_read", "devices": ["../x"]}], "data.reasons[0].devices[0]"),
    ([{"code": "devices_not_read", "devices": ["a" * 65]}], "data.reasons[0].devices[0]"),
    ([{"code": "devices_not_read", "devices": [f"f{i}" for i in range(257)]}],
     "data.reasons[0].devices"),
    ([{"code": "wrong_version", "version": "1.0\u0000", "expected": "1.1.0"}],
     "data.reasons[0].version"),
    ([{"code": "wrong_version", "version": "版本", "expected": "1.1.0"}],
     "data.reasons[0].version"),
    ([{"code": "wrong_version", "version": "1" * 65, "expected": "1.1.0"}],
     "data.reasons[0].version"),
    ([{"code": "wrong_pid", "pid": -1, "main_pid": 42}], "data.reasons[0].pid"),
    ([{"code": "no_verdict", "state": "<script>"}], "data.reasons[0].state"),
    ([{"code": "not_connected"}, {"code": "restarted", "times": -3}],
     "data.reasons[1].times"),
    ([{"code": "not_connected"}] * (ur.MAX_REASONS + 1), "data.reasons: expected `array` of "
                                                         "length <= 32"),
])
def test_hostile_reasons_are_refused_naming_the_field(value: Any, where: str) -> None:
    with pytest.raises(PayloadError) as err:
        ur.reasons_of({"command": "c-1", "state": "done", "reasons": value})
    assert where in str(err.value), str(err.value)


def test_a_reason_built_out_of_bounds_is_refused_before_it_is_written() -> None:
    """Building a Struct checks no bounds: `reasons_data` does, as the cloud will."""
    with pytest.raises(PayloadError, match=r"reasons\[0\].devices\[0\]"):
        ur.reasons_data([ur.DevicesNotRead(("fridge 1",))])
    with pytest.raises(PayloadError, match="times"):
        ur.reasons_data([ur.Restarted(0)])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(
        st.sampled_from(["code", "devices", "times", "window_s", "age_s", "version",
                         "expected", "pid", "main_pid", "state", "x"]) | st.text(max_size=8),
        inner, max_size=5),
    max_leaves=30)
codes = st.sampled_from(sorted(ur.CODES))


@settings(max_examples=300, deadline=1000, database=None)
@given(st.lists(st.one_of(json_values, st.builds(lambda c, d: {**d, "code": c}, codes,
                                                  st.dictionaries(st.text(max_size=8),
                                                                  json_values, max_size=3))),
                max_size=5))
def test_anything_parses_or_is_a_payload_error(value: Any) -> None:
    try:
        reasons = ur.parse_reasons(value)
    except PayloadError as exc:
        assert str(exc).startswith("data.reasons")
        return
    # Whatever parses is worded in both languages and written back unchanged.
    for r in reasons:
        assert str(ur.describe(r)) and ZH.render(ur.describe(r))
    assert ur.parse_reasons(ur.reasons_data(reasons)) == reasons
