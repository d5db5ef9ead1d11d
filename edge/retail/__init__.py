"""Retail at the store terminal: catalogue, stock ledger, orders, pickup at the counter.

Pure cores (`ledger` sums and FEFO, `verify` verdicts and rate limiting, `handover` and
lane reconciliation) with the I/O in `service.Retail`, which the agent's main thread owns:
every ledger row is written in the same SQLite transaction as its outbox event, so stock
and what the cloud hears can never disagree. See docs/retail.md.
"""
