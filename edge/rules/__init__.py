"""Cold-chain rules at the edge: a pure engine fed readings, events and ticks in event time.

    engine = RuleEngine(load_config("rules.toml", RulesConfig))
    changes = engine.on_reading("fridge-1", t, air_c=3.1, product_c=3.4)
    changes += engine.on_event("fridge-1", t, "door", {"open": True})
    changes += engine.tick(now)        # time-based rules: door timers, link lost
    engine.active()                    # alerts active now

Rules, defaults and the trace formats: docs/alerts.md.
"""

from edge.rules.alerts import Alert, AlertChange
from edge.rules.config import FridgeOverride, RulesConfig, Thresholds
from edge.rules.engine import RuleEngine
from edge.rules.trace import TraceError, TraceRow, read_trace, replay

__all__ = [
    "Alert",
    "AlertChange",
    "FridgeOverride",
    "RuleEngine",
    "RulesConfig",
    "Thresholds",
    "TraceError",
    "TraceRow",
    "read_trace",
    "replay",
]
