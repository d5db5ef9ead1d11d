"""Sequence gaps of one record stream, as explicit ranges: the pure core, no I/O.

A stream is (store, kind, device, boot); its records are numbered 1, 2, 3, ... without
holes at the edge. The cloud remembers, per stream, the highest seq it has stored
(`max_seq`) and the ranges below it that are still missing (open gaps). When a batch adds
records, `plan()` says what changes:

- records above `max_seq` raise it; every seq skipped on the way becomes a new open gap;
- records at or below `max_seq` fill (part of) an open gap: the gap shrinks, splits or is
  marked filled. Filled ranges are kept as rows, never deleted, so a stretch that arrived
  late (a redelivery after an outage) stays visible as "was missing, now filled".

Nothing above `max_seq` is ever called missing: the tail of a stream (say, the last records
of an edge boot that never reached the cloud) cannot be told apart from "not sent yet".

Invariant (checked by the tests): for every stream, the open gaps are exactly the seqs in
1..max_seq that are not stored, and the open and filled ranges of a stream never overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Range = tuple[int, int]  # first and last seq, both inclusive
FIRST_SEQ = 1  # every stream starts here (contracts.md); seq 0 is stored but not tracked


@dataclass(frozen=True)
class OpenGap:
    id: int
    first: int
    last: int


@dataclass(frozen=True)
class Fill:
    """Records arrived inside open gap `gap_id`: what of it is still missing, what is filled."""

    gap_id: int
    remaining: tuple[Range, ...]
    filled: tuple[Range, ...]


@dataclass(frozen=True)
class GapPlan:
    max_seq: int
    opened: tuple[Range, ...]
    fills: tuple[Fill, ...]
    # Seqs at or below max_seq that no open gap covered. Only possible for data stored before
    # gap tracking existed; recorded as gaps filled on arrival so every late record is visible.
    untracked: tuple[Range, ...] = ()


def runs(seqs: Iterable[int]) -> list[Range]:
    """Contiguous runs of the given seqs: [1, 2, 3, 7, 9, 10] -> [(1, 3), (7, 7), (9, 10)]."""
    out: list[Range] = []
    for s in sorted(set(seqs)):
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def missing_within(first: int, last: int, present: Sequence[int]) -> list[Range]:
    """The ranges of first..last not in `present` (sorted, unique)."""
    out: list[Range] = []
    nxt = first
    for s in present:
        if s < first or s > last:
            continue
        if s > nxt:
            out.append((nxt, s - 1))
        nxt = s + 1
    if nxt <= last:
        out.append((nxt, last))
    return out


def plan(max_seq: int, open_gaps: Sequence[OpenGap], inserted: Iterable[int]) -> GapPlan:
    """What the newly inserted seqs do to a stream whose highest stored seq is `max_seq`.

    `open_gaps` must contain every open gap that overlaps the inserted seqs at or below
    `max_seq` (it may contain more). Seqs already stored must not be in `inserted`.
    """
    new = sorted({s for s in inserted if s >= FIRST_SEQ})
    above = [s for s in new if s > max_seq]
    below = [s for s in new if s <= max_seq]
    opened: tuple[Range, ...] = ()
    new_max = max_seq
    if above:
        new_max = above[-1]
        opened = tuple(missing_within(max_seq + 1, new_max, above))
    fills: list[Fill] = []
    covered: set[int] = set()
    for gap in sorted(open_gaps, key=lambda g: g.first):
        inside = [s for s in below if gap.first <= s <= gap.last]
        if not inside:
            continue
        covered.update(inside)
        fills.append(Fill(gap.id, tuple(missing_within(gap.first, gap.last, inside)),
                          tuple(runs(inside))))
    untracked = tuple(runs(s for s in below if s not in covered))
    return GapPlan(new_max, opened, tuple(fills), untracked)


def holes(max_seq: int, stored: Iterable[int]) -> list[Range]:
    """Recompute the open gaps from scratch: the seqs of 1..max_seq that are not stored."""
    return missing_within(FIRST_SEQ, max_seq, sorted({s for s in stored if s >= FIRST_SEQ}))
