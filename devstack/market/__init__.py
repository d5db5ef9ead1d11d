"""The market simulator (issue #14): the real replenishment (cloud_gateway.supply) and the
real stock ledger (edge.retail.ledger) run day by day over a market of stores and items,
against the whole-case min/max baseline, on synthetic demand or a replayed trace
(docs/supply.md)."""
