"""Reading the Prometheus text format in tests: every line must be HELP, TYPE or a valid
sample (format 0.0.4), and a sample's value is found by name and label."""

from __future__ import annotations

import re

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*"'
                    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*")*)\})? '
                    r'(-?[0-9.e+-]+|\+Inf|-Inf|NaN)$')
Samples = dict[str, list[str]]


def parse(text: str) -> Samples:
    """Sample lines by metric name; AssertionError on any line the format does not allow."""
    assert text.endswith("\n"), "the text must end with a newline"
    out: Samples = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        out.setdefault(m.group(1), []).append(line)
    return out


def value(samples: Samples, name: str, label: str = "") -> float:
    """The one sample of `name` whose line contains `label` (e.g. 'state="online"')."""
    lines = [s for s in samples.get(name, []) if label in s]
    assert len(lines) == 1, (name, label, samples.get(name))
    return float(lines[0].rsplit(" ", 1)[1])
