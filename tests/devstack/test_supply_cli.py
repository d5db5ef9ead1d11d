"""`xiaodian supply simulate` on good and bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from small_market import SMALL

from devstack.cli import main


def _market(tmp_path: Path) -> Path:
    path = tmp_path / "market.toml"
    path.write_text(SMALL, encoding="utf-8")
    return path


def test_json_figures_for_both_policies_and_a_replayed_trace(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    market = _market(tmp_path)
    trace = tmp_path / "demand.csv"
    args = ["supply", "simulate", "--market", str(market), "--days", "8", "--seed", "4",
            "--json"]
    assert main([*args, "--write-demand", str(trace)]) == 0
    synthetic = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in synthetic["results"]] == ["ours", "whole-case"]
    ours = synthetic["results"][0]
    for key in ("waste_units_pct", "waste_cost_pct", "fill_rate_pct", "lost_sales_units",
                "oversold_lines", "preorders_refused_capacity", "accepted_beyond_capacity"):
        assert key in ours
    assert ours["days"] == 8 and ours["walk_in_demand"] > 0
    # The written trace replays to the same figures.
    assert main([*args, "--demand", str(trace), "--policy", "ours"]) == 0
    replay = json.loads(capsys.readouterr().out)
    assert replay["results"][0] == ours


def test_a_table_in_chinese_by_default_and_english_on_request(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["supply", "simulate", "--market", str(_market(tmp_path)), "--days", "3"]
    assert main(args) == 0
    zh = capsys.readouterr().out
    assert "损耗" in zh and "Waste" not in zh
    assert main([*args, "--lang", "en", "--policy", "whole-case"]) == 0
    en = capsys.readouterr().out
    assert "Waste, percent of units delivered" in en and "Whole-case baseline" in en
    assert "Ours" not in en


def test_bad_inputs_exit_2_with_the_place(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    market = _market(tmp_path)
    text = market.read_text().replace("case_pack = 12", "case_pack = 0")
    market.write_text(text)
    assert main(["supply", "simulate", "--market", str(market)]) == 2
    assert f"{market}:14:1: [[items]] #1: item milk: unit_lot and case_pack" in (
        capsys.readouterr().err)
    demand = tmp_path / "d.csv"
    demand.write_text("store,item,date,hour,channel,qty\nA,milk,2026-03-02,9,walk_in,x\n")
    assert main(["supply", "simulate", "--demand", str(demand)]) == 2
    assert f"{demand}:2:1: store: 'A' is not a store of the market" in capsys.readouterr().err
    assert main(["supply", "simulate", "--market", str(tmp_path / "none.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    short = _market(tmp_path)
    demand.write_text("store,item,date,hour,channel,qty\nA,milk,2026-03-02,9,walk_in,1\n")
    assert main(["supply", "simulate", "--market", str(short), "--demand", str(demand)]) == 2
    assert "the warm-up alone needs 14" in capsys.readouterr().err


def test_the_cli_names_the_same_policies_as_the_simulator() -> None:
    from devstack import supply_cli
    from devstack.market.policies import POLICIES

    assert supply_cli.POLICIES == POLICIES
