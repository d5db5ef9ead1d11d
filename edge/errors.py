"""The edge's one base error: every refusal the store terminal raises on purpose is one."""

from __future__ import annotations


class EdgeError(Exception):
    """Raised on purpose by the edge agent (retail refusals, trace files, ...)."""
