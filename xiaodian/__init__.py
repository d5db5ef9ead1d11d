"""xiaodian: software for neighbourhood stores in a fresh-food programme."""

__version__ = "0.1.0"
