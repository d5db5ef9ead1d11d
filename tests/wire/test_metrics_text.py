"""The Prometheus text format as written by xiaodian/metrics_text.py."""

from __future__ import annotations

import pytest

from devstack.testkit.prometheus import parse
from xiaodian.metrics_text import Family, render


def test_families_render_as_the_text_format() -> None:
    text = render([
        Family("x_total", "counter", "Things.\nMore").add(3, worker="w-1").add(2.5, worker="w2"),
        Family("y", "gauge", "A gauge.").add(None).add(True).add(float("inf"), k="a"),
        Family("z", "gauge", "Escapes.").add(1, path='a\\b"c\nd'),
    ])
    assert text.splitlines()[:4] == ["# HELP x_total Things. More", "# TYPE x_total counter",
                                     'x_total{worker="w-1"} 3', 'x_total{worker="w2"} 2.5']
    assert 'y 1' in text.splitlines() and 'y{k="a"} +Inf' in text.splitlines()
    assert 'z{path="a\\\\b\\"c\\nd"} 1' in text.splitlines()
    assert set(parse(text)) == {"x_total", "y", "z"}


@pytest.mark.parametrize(("family", "why"), [
    (Family("bad-name", "gauge", "x"), "bad metric"),
    (Family("ok", "summary", "x"), "bad metric"),
    (Family("ok", "gauge", "x").add(1, **{"__reserved": "x"}), "bad label"),
])
def test_what_the_format_cannot_say_is_refused(family: Family, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        render([family])
