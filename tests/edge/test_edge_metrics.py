"""The terminal's Prometheus metrics on loopback (#16 point 6): the real agent on the
simulator, scraped over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from devstack.testkit.edge import free_port, running
from devstack.testkit.http_client import get
from devstack.testkit.prometheus import parse
from devstack.testkit.prometheus import value as _value
from devstack.testkit.wait import wait
from edge.config import EdgeSettings
from xiaodian.mqtt import MqttSettings

SCENARIO = {"sim": {"link_dir": "run", "truth": "truth.jsonl", "speed": 20.0},
            "fridges": [{"id": "fridge-1", "sample_interval_s": 10,
                         "door_openings_per_hour": 0, "defrost_every_h": 0}]}


def test_the_agent_serves_its_counters_on_loopback(
    tmp_path: Path, mqtt_settings: Callable[[str], MqttSettings]
) -> None:
    port = free_port()
    with running(SCENARIO, tmp_path, mqtt_settings("store-001"), metrics_port=port) as (
            _runner, agent):
        assert agent.metrics is not None
        assert agent.metrics.httpd.server_address == ("127.0.0.1", port)
        url = f"http://127.0.0.1:{port}/metrics"

        def scrape() -> dict[str, list[str]]:
            r = get(url)
            assert r.status == 200, r.body
            if r.body.startswith(b"# no metrics yet"):
                return {}
            return parse(r.body.decode())

        def settled(s: dict[str, list[str]]) -> bool:
            # Frames are counted as they arrive, records when stored, the link when the
            # broker answers: each in its own time, so wait for all three (a loaded
            # machine once showed 3 frames before 3 stored records).
            def has(name: str, label: str = "") -> bool:
                return any(label in line for line in s.get(name, []))

            return (has("xiaodian_edge_link_frames_total", 'device="fridge-1"')
                    and has("xiaodian_edge_stored_total")
                    and has("xiaodian_edge_uplink_connected")
                    and _value(s, "xiaodian_edge_link_frames_total", 'device="fridge-1"') >= 3
                    and _value(s, "xiaodian_edge_stored_total") >= 3
                    and _value(s, "xiaodian_edge_uplink_connected") == 1)

        got = wait(lambda: (s := scrape()) and settled(s) and s, 30,
                   "frames, stored records and the uplink on /metrics")
        assert got
        assert _value(got, "xiaodian_edge_link_errors_total", 'device="fridge-1"') == 0
        assert _value(got, "xiaodian_edge_alerts_active", 'severity="critical"') == 0
        assert _value(got, "xiaodian_edge_disk_used_bytes") > 0
        assert get(f"http://127.0.0.1:{port}/other").status == 404


def test_a_bad_metrics_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metrics_port"):
        EdgeSettings(store_id="store-001", data_dir=tmp_path, metrics_port=70000)
