"""Ground truth: one JSON line per frame or scanner line that reached the host side.

Format (docs/contracts.md, "Simulator (hw_sim) → edge"):

    {"device": "fridge-1", "kind": "temp", "fseq": 12, "dev_ms": 120000,
     "probes": [[0, "ok", 3.0625], [1, "ok", 3.5]]}
    {"device": "scanner-1", "kind": "scan", "line": "]E06901234567892"}

Each line is flushed as it is written, so a reader tailing the file sees it at once and a
simulator that is killed loses at most the line it was writing.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any


class TruthWriter:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered text: one write + flush per record; truncated per run.
        self._file: IO[str] | None = self.path.open("w", encoding="utf-8", buffering=1)
        self.lines = 0

    def record(self, device: str, kind: str, **fields: Any) -> None:
        """Write `{"device", "kind", **fields}` as one line, in that key order."""
        if self._file is None:
            raise ValueError("ground-truth file is closed")
        self._file.write(json.dumps({"device": device, "kind": kind, **fields}) + "\n")
        self._file.flush()
        self.lines += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> TruthWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_truth(path: Path | str) -> list[dict[str, Any]]:
    """All complete records of a ground-truth file (a torn last line is skipped)."""
    records: list[dict[str, Any]] = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            records.append(json.loads(line))
    return records
