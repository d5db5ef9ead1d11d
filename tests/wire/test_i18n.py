"""The one i18n mechanism: the catalogue covers every marked string, formats follow the
locale and the store's time zone, and English is there on request."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from devstack.testkit.browser import english_words
from xiaodian.i18n import N_, Message, negotiate, translator
from xiaodian.i18n.core import LOCALE_DIR
from xiaodian.i18n.templates import environment

ROOT = Path(__file__).resolve().parents[2]
# build/ and dist/: generated (the terminal package's clean Debian root lives in build/).
SKIP_DIRS = {".venv", ".fw-stubs", "tests", "bench", "node_modules", ".git", "build", "dist"}
PLACEHOLDER = re.compile(r"%\(\w+\)[sd]|%[sd]")


def _source_msgids() -> set[str]:
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)

    def keep(dirname: str) -> bool:
        name = Path(dirname).name
        return name not in SKIP_DIRS and not name.startswith((".", "_"))

    ids = set()
    for _file, _line, msg, _comments, _ctx in extract_from_dir(
            str(ROOT), method_map, options_map, directory_filter=keep):
        ids.add(msg[0] if isinstance(msg, tuple) else msg)
    return ids


def _zh_catalogue() -> dict[str, object]:
    with (LOCALE_DIR / "zh_CN" / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        cat = read_po(fh, locale="zh_CN")
    return {(m.id[0] if isinstance(m.id, tuple) else m.id): m for m in cat if m.id}


def test_every_marked_string_has_a_chinese_translation() -> None:
    source = _source_msgids()
    catalogue = _zh_catalogue()
    missing = sorted(source - catalogue.keys())
    assert not missing, f"not in the zh_CN catalogue (run `make catalog`, translate): {missing}"
    untranslated = sorted(k for k in source if not _translated(catalogue[k]))
    assert not untranslated, f"no zh_CN translation (or fuzzy): {untranslated}"
    stale = sorted(catalogue.keys() - source)
    assert not stale, f"in the catalogue but no longer in the code (`make catalog`): {stale}"


def _translated(msg: object) -> bool:
    string = getattr(msg, "string", "")
    strings = string if isinstance(string, tuple) else (string,)
    return bool(strings) and all(strings) and not getattr(msg, "fuzzy", False)


def test_translations_keep_every_placeholder() -> None:
    bad = []
    for msgid, msg in _zh_catalogue().items():
        string = getattr(msg, "string", "")
        for s in string if isinstance(string, tuple) else (string,):
            if s and sorted(PLACEHOLDER.findall(s)) != sorted(PLACEHOLDER.findall(msgid)):
                bad.append((msgid, s))
    assert not bad, bad


def test_locale_is_chinese_unless_english_is_asked_for() -> None:
    assert negotiate(None) == "zh_CN"
    assert negotiate("en") == "en" and negotiate("en-US") == "en"
    assert negotiate(None, remembered="en") == "en"
    assert negotiate("zh-CN", remembered="en") == "zh_CN"
    assert negotiate("fr") == "zh_CN"  # unknown: the default, not an error page
    with pytest.raises(ValueError, match="locale"):
        translator("fr")


def test_times_are_in_the_store_zone_and_money_in_yuan() -> None:
    zh, en = translator("zh_CN"), translator("en")
    noon_utc = datetime(2026, 12, 7, 4, 0, tzinfo=UTC).timestamp()
    assert zh.time(noon_utc, "Asia/Shanghai") == "12:00"
    assert en.time(noon_utc, "Asia/Shanghai") in ("12:00 PM", "12:00\u202fPM")
    assert "2026" in zh.date_time(noon_utc) and "12:00" in zh.date_time(noon_utc)
    assert zh.money(1250) == "¥12.50" and en.money(1250) == "CN¥12.50"
    assert zh.money(-5) == "-¥0.05"
    assert zh.temperature(3.14) == "3.1\u00a0°C"  # never broken over two lines
    assert zh.grams(1250) == "1.250\u00a0kg" and zh.grams(85) == "85\u00a0g"


def test_messages_made_before_the_reader_is_known_render_in_each_language() -> None:
    msg = Message(N_("%(fridge)s above %(limit)s for %(minutes)s min"),
                  {"fridge": "fridge-2", "limit": "5 °C", "minutes": 12})
    assert str(msg) == "fridge-2 above 5 °C for 12 min"
    assert translator("en").render(msg) == str(msg)


def test_templates_fail_on_a_missing_value_and_escape_what_they_insert() -> None:
    from jinja2 import UndefinedError

    env = environment("xiaodian", "i18n", "en")
    page = env.from_string("<p>{{ _('Hello %(name)s', name=who) }}</p>")
    assert page.render(who="<b>") == "<p>Hello &lt;b&gt;</p>"
    with pytest.raises(UndefinedError):
        page.render()


def test_the_english_word_finder_lets_ids_and_units_through() -> None:
    text = "冰箱 fridge-2 温度 3.1 °C，GTIN 06901234567892，Li 已确认 Acknowledge 5 kg"
    assert english_words(text, allowed=["Li"]) == ["Acknowledge"]
