"""The fingerprint of an agent's effective configuration, for the cloud's inventory.

SHA-256 over the loaded configuration (every default filled in, paths as written), in a
canonical JSON form: two terminals with the same hash run the same settings, and a
technician sees at a glance which store differs from its neighbours. Secrets never enter
it: the configuration names key files, it does not hold them, and their contents are not
read here (a hash of a short secret could be searched for).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import PurePath
from typing import Any

from edge.config import EdgeConfig


def config_hash(cfg: EdgeConfig) -> str:
    return hashlib.sha256(canonical(cfg).encode("utf-8")).hexdigest()


def canonical(cfg: EdgeConfig) -> str:
    """The configuration as sorted, compact JSON (what the hash is taken of)."""
    return json.dumps(_plain(cfg), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"config_hash: cannot fingerprint a {type(value).__name__}")
