"""Orders handed over at this terminal, kept in its SQLite file so a pickup code works once."""

from __future__ import annotations

import sqlite3

from xiaodian.wire.pickup import PickupError, PickupTicket, format_time


class RedeemedCodes:
    """Orders handed over at this terminal, in SQLite, so a code works once, even offline.

    Keyed by order: a reissued code (new nonce) for an order already handed over is refused
    too, because the goods left once. The nonce is kept to tell which code was used.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        with conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS pickup_redeemed ("
                " store TEXT NOT NULL, order_id INTEGER NOT NULL, nonce INTEGER NOT NULL,"
                " redeemed_at REAL NOT NULL, PRIMARY KEY (store, order_id))"
            )

    def redeem(self, ticket: PickupTicket, now: float) -> None:
        """Record the handover, or raise PickupError("already_redeemed") with the first time."""
        with self._conn:
            cur = self._conn.execute(
                "INSERT INTO pickup_redeemed (store, order_id, nonce, redeemed_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (ticket.store_id, ticket.order_id, ticket.nonce, now),
            )
        if cur.rowcount == 1:
            return
        when = self.redeemed_at(ticket.store_id, ticket.order_id)
        raise PickupError(
            "already_redeemed",
            f"order {ticket.order_id} was already picked up at {format_time(when or 0.0)}",
            redeemed_at=when,
        )

    def redeemed_at(self, store_id: str, order_id: int) -> float | None:
        row = self._conn.execute(
            "SELECT redeemed_at FROM pickup_redeemed WHERE store = ? AND order_id = ?",
            (store_id, order_id),
        ).fetchone()
        return None if row is None else float(row[0])
