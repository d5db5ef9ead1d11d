"""AIM symbology identifiers (ISO/IEC 15424): `]` + code character + modifier before the data."""

from __future__ import annotations

from edge.scan.errors import ScanError

# The identifiers our scanners are configured to send, and the few others worth naming.
SYMBOLOGY_NAMES: dict[str, str] = {
    "E0": "EAN-13/UPC-A",
    "E3": "EAN-13 with add-on",
    "E4": "EAN-8",
    "I1": "ITF-14",
    "C0": "Code 128",
    "C1": "GS1-128",
    "e0": "GS1 DataBar",
    "d1": "Data Matrix",
    "d2": "GS1 DataMatrix",
    "Q1": "QR Code",
    "Q3": "GS1 QR Code",
    "z0": "Aztec",
    "A0": "Code 39",
}

# Symbologies whose data is a bare GTIN, and those whose data is a GS1 element string
# (FNC1 in first position; later FNC1s arrive as the GS character 0x1D).
GTIN_SYMBOLOGIES = frozenset({"E0", "E3", "E4", "I1"})
GS1_SYMBOLOGIES = frozenset({"C1", "e0", "d2", "Q3", "J1"})
# 2-D symbologies that carry free text: a pickup code, or nothing we know.
TEXT_SYMBOLOGIES = frozenset({"Q0", "Q1", "Q2", "d0", "d1", "z0"})


def split_aim(line: str) -> tuple[str | None, str]:
    """(`"E0"`-style identifier or None when the line has no AIM prefix, the data after it)."""
    if not line.startswith("]"):
        return None, line
    if len(line) < 3 or not line[1].isascii() or not line[1].isalpha() or not line[2].isascii():
        raise ScanError("bad_symbology", f"incomplete AIM symbology identifier in {line[:3]!r}")
    return line[1:3], line[3:]


def symbology_name(symbology: str | None) -> str | None:
    if symbology is None:
        return None
    return SYMBOLOGY_NAMES.get(symbology, f"AIM ]{symbology}")
