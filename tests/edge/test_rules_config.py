"""Rule settings from TOML: defaults, per-fridge overrides, errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from edge.rules import FridgeOverride, RulesConfig, Thresholds
from xiaodian.config import ConfigError, load_config

GOOD = """
reorder_horizon_h = 12

[defaults]
set_point_c = 2.0
warm_for_min = 20

[[fridges]]
id = "drinks"
set_point_c = 4.0
warm_above_c = 7
"""


def _load(tmp_path: Path, text: str) -> RulesConfig:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, RulesConfig)


def test_overrides_start_from_the_file_defaults(tmp_path: Path) -> None:
    cfg = _load(tmp_path, GOOD)
    assert cfg.reorder_horizon_h == 12.0
    drinks = cfg.for_fridge("drinks")
    assert (drinks.set_point_c, drinks.warm_above_c, drinks.warm_for_min) == (4.0, 7.0, 20.0)
    other = cfg.for_fridge("fridge-1")
    assert (other.set_point_c, other.warm_above_c) == (2.0, 5.0)
    assert other.hot_for_min == Thresholds().hot_for_min


def test_defaults_are_design_md(tmp_path: Path) -> None:
    t = _load(tmp_path, "").for_fridge("x")
    assert (t.warm_above_c, t.warm_for_min, t.warm_clear_below_c) == (5.0, 30.0, 4.0)
    assert (t.hot_above_c, t.hot_for_min, t.hot_cumulative_min) == (8.0, 15.0, 240.0)
    assert (t.freeze_warning_below_c, t.freeze_critical_below_c) == (-0.5, -2.0)
    assert (t.door_buzzer_min, t.door_owner_min, t.door_escalate_min) == (3.0, 5.0, 15.0)
    assert (t.link_lost_min, t.defrost_recovery_min, t.defrost_suppress_cap_min) == (10, 60, 90)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[defaults]\nwarm_for_min = 0", "defaults.warm_for_min", "greater than 0"),
        ("[defaults]\nwarm_abve_c = 6", "defaults.warm_abve_c", "unknown key"),
        ('[defaults]\nset_point_c = "3"', "defaults.set_point_c", "expected a number"),
        (
            "[defaults]\nwarm_clear_below_c = 6",
            "defaults.warm_clear_below_c",
            "not be above warm_above_c",
        ),
        ('[[fridges]]\nid = "a"\nwarm_clear_below_c = 9', "fridges", "warm_clear_below_c"),
        ('[[fridges]]\nid = "a"\n[[fridges]]\nid = "a"', "fridges", "listed twice"),
    ],
)
def test_bad_values_name_the_key_and_file(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert err.value.key == key and problem in err.value.problem
    assert str(tmp_path / "rules.toml") in str(err.value)


def test_override_fields_mirror_thresholds() -> None:
    names = [f.name for f in dataclasses.fields(Thresholds)]
    assert [f.name for f in dataclasses.fields(FridgeOverride)] == ["id", *names]


def test_the_example_in_docs_alerts_md_loads(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text("utf-8")
    example = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    cfg = _load(tmp_path, example)
    assert cfg.for_fridge("fridge-2").warm_above_c == 6.0
    assert cfg.for_fridge("fridge-3").link_lost_min == 20.0
