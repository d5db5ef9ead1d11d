"""A fridge controller played by the test on a pseudo-terminal, and what the edge tests ask of
an agent reading it (its config, whether its reader is up, what its outbox holds).

Used by test_edge_agent and the modules that run the same agent (the `fridge` fixture is in
conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from devstack.testkit.edge import QUICK, edge_config, pty_link
from edge.agent import Agent
from edge.config import EdgeConfig
from edge.store import EdgeStore
from firmware_bridge import codec
from xiaodian.mqtt import MqttSettings


class FakeFridge:
    """The device end of a pty: the test writes frames (and garbage) as a controller would."""

    def __init__(self, link: Path) -> None:
        self.master = pty_link(link)
        self.seq = 0
        self.sent: list[int] = []  # dev_ms of every TEMP written
        self.host_decoder = codec.FrameDecoder()
        self.receipted: list[int] = []

    def hello(self, boot_count: int = 1) -> None:
        """What a controller answers to the agent's GET_HELLO; records need it first."""
        self.seq = (self.seq + 1) & 0xFFFF
        payload = codec.pack_hello(0, (0, 1, 0), "power_on", 0, 2, 0, boot_count, "fridge-1")
        os.write(self.master, codec.encode_frame(codec.HELLO, self.seq, payload, codec.REPLY))

    def receipts(self) -> list[int]:
        """Sequence numbers the agent has receipted so far (read from the host's bytes)."""
        os.set_blocking(self.master, False)
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := os.read(self.master, 4096):
                for frame in self.host_decoder.feed(chunk):
                    msg = codec.decode_message(frame.type, frame.payload)
                    if msg is not None and msg["type"] == "receipt":
                        self.receipted += msg["seqs"]
        return self.receipted

    def temp(self, dev_ms: int, celsius: float) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        payload = codec.pack_temp(dev_ms, [(0, "ok", celsius), (1, "ok", celsius + 0.5)])
        os.write(self.master, codec.encode_frame(codec.TEMP, self.seq, payload))
        self.sent.append(dev_ms)

    def garbage(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        os.close(self.master)


def agent_config(
    tmp_path: Path, mqtt: MqttSettings, link: Path, confirm_timeout_s: float = 30.0
) -> EdgeConfig:
    """An agent reading one fridge ("fridge-1") on `link`, with the quick test timings."""
    return edge_config(
        tmp_path / "edge",
        mqtt,
        fridges=[("fridge-1", link)],
        confirm_timeout_s=confirm_timeout_s,
        confirm_min_s=min(3.0, confirm_timeout_s),
        **QUICK,
    )


def fridge_counts(agent: Agent) -> dict[str, dict[str, int]]:
    """Read through a connection of our own: the agent's belongs to its thread."""
    store = EdgeStore.open_readonly(agent.config.edge.db_path)
    try:
        return store.counts()
    finally:
        store.close()


def settled(agent: Agent, stored: int) -> bool:
    """`stored` readings and none of them left in the outbox, in one read of the counts."""
    c = fridge_counts(agent).get("fridge-1", {})
    return c.get("readings_stored", 0) == stored and c.get("readings_pending", 0) == 0


def reader_up(agent: Agent) -> bool:
    # This agent's own readers, not a stored "link up" event: after a restart the database
    # still holds the last process's, and bytes written before the port is opened are
    # flushed by the open (pyserial resets the input buffer).
    up = all(r.opened.is_set() for r in agent.readers)
    store = EdgeStore.open_readonly(agent.config.edge.db_path)
    try:
        # This process's reader: after a restart, the last run's "up" says nothing.
        rows = store.db.execute("SELECT data FROM events WHERE type='link' AND boot=?",
                                (agent.store.boot,)).fetchall()
    finally:
        store.close()
    return up and any(json.loads(r[0])["state"] == "up" for r in rows)
