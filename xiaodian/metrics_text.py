"""Prometheus text exposition format (version 0.0.4), written by hand for the cloud's
`/metrics` and the terminal's loopback metrics.

Both sides read their values on demand from what they already keep (counters, the
database), so a registry of live metric objects (prometheus-client's model) would only be
filled to be read back; the format itself is a few lines: `# HELP`, `# TYPE`, then
`name{label="value"} number` per sample, label values escaped (backslash, double quote,
newline), numbers as Go's strconv prints them (`+Inf`, `-Inf`, `NaN`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

Sample = tuple[Mapping[str, str], float]


@dataclass
class Family:
    name: str
    type: str  # counter | gauge
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float | int | bool | None, **labels: str) -> Family:
        """A sample; None (not known) is left out rather than invented."""
        if value is not None:
            self.samples.append((labels, float(value)))
        return self


def _value(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(families: Iterable[Family]) -> str:
    out: list[str] = []
    for f in families:
        if not _NAME.match(f.name) or f.type not in ("counter", "gauge"):
            raise ValueError(f"bad metric {f.name!r} of type {f.type!r}")
        out.append(f"# HELP {f.name} {f.help.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
        out.append(f"# TYPE {f.name} {f.type}")
        for labels, value in f.samples:
            for key in labels:
                if not _LABEL.match(key) or key.startswith("__"):
                    raise ValueError(f"bad label name {key!r}")
            inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
            out.append(f"{f.name}{{{inner}}} {_value(value)}" if inner
                       else f"{f.name} {_value(value)}")
    return "\n".join(out) + "\n"
