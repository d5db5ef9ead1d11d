"""Retail at the store terminal: catalogue, stock ledger, orders, pickup at the counter.

Pure cores (`ledger` sums and FEFO, `verify` verdicts and rate limiting, `handover` and
lane reconciliation) with the I/O in small parts behind the `service.Retail` facade
(counter, pickup_flow, smart_fridge, orders, stock_forms over a shared `desk.Desk`), all
owned by the agent's main thread: every ledger row is written in the same SQLite
transaction as its outbox event, so stock and what the cloud hears can never disagree.
See docs/retail.md.
"""
