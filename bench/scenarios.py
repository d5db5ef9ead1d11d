"""The scenario bench: every cold-chain scenario through simulator → controller → wire →
edge interpret → Alerting/RuleEngine, in-process on an accelerated clock.

    python -m bench.scenarios [--only NAME] [--hours H]

The runs and the judging are `devstack.scenario_bench` (shared with the tests); what must
(or must not) alert is devstack/scenario_expectations.toml. Exit 1 if a must-alert
expectation misses its budget or an unexpected alert is raised (scenarios marked
`known_issue` are printed but do not fail).
"""

from __future__ import annotations

import argparse
import sys
import time

from devstack.scenario_bench import Verdict, run_all

from .common import check_figures

# The smoke run (~10 s): three that must alert (door, link, mains) and one that must not.
SMOKE = ("door_left_open", "link_lost", "power_cut_short", "probe_85_power_up")


def print_table(verdicts: list[Verdict]) -> None:
    head = (
        "scenario",
        "expected (rule/severity from condition time)",
        "alerts raised",
        "delay",
        "budget",
        "ok",
        "false alerts",
    )
    lines = [head]
    for v in verdicts:
        for i, r in enumerate(v.rows):
            ok = "yes" if r.ok else ("KNOWN" if v.known_issue else "NO")
            lines.append(
                (
                    r.scenario if i == 0 else "",
                    r.expected,
                    r.raised,
                    r.delay,
                    r.budget,
                    ok,
                    r.false_alerts,
                )
            )
    widths = [min(max(len(line[i]) for line in lines), 60) for i in range(len(head))]
    for n, line in enumerate(lines):
        print(" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    for v in verdicts:
        if v.note:
            print(f"note, {v.name}: {v.note}")
        if v.known_issue:
            print(f"known issue, {v.name}: {v.known_issue}")
        for f in v.failures:
            print(f"{'known' if v.known_issue else 'FAIL'} {v.name}: {f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scenarios", description=__doc__)
    parser.add_argument("--only", help="run one scenario (file name without .toml)")
    parser.add_argument("--hours", type=float, help="simulated hours (default: each scenario's)")
    parser.add_argument("--jobs", type=int, help="parallel processes (default: CPU count)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"quick check (~10 s): only {', '.join(SMOKE)}; exits 1 unless "
                        "each is judged and their expected alerts are detected")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    verdicts = run_all(
        SMOKE if args.smoke else args.only, args.hours, args.jobs,
        lambda s: print(s, file=sys.stderr, flush=True),
    )
    took = time.monotonic() - t0
    if not verdicts:
        print(f"no scenario named {args.only!r}", file=sys.stderr)
        return 2
    print_table(verdicts)
    bad = [v.name for v in verdicts if not v.passed and not v.known_issue]
    print(
        f"\n{len(verdicts)} scenarios, {len(bad)} failed" + (f": {', '.join(bad)}" if bad else "")
    )
    if bad:
        return 1
    if not args.smoke:
        return 0
    rows = [r for v in verdicts for r in v.rows]
    return check_figures([
        # A detection delay may be 0 s (mains): counts are the figures, not the delays.
        ("scenarios judged", len(verdicts) if len(verdicts) == len(SMOKE) else 0),
        ("expected alerts", sum(" from " in r.expected for r in rows)),
        ("detected in budget", sum(r.ok and r.delay not in ("-", "missed") for r in rows)),
        ("simulated h per real s", sum(v.hours for v in verdicts) / took),
    ])


if __name__ == "__main__":
    raise SystemExit(main())
