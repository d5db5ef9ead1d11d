"""Cold-chain alerts in the cloud: state, escalation, notification channels, acknowledgement.

- `model`: an alert's cloud record, merged idempotently from the edge's alert changes (pure).
- `policy`: the escalation state machine, fed an alert and a time (pure).
- `store`: tables and transactions (alerts, acks, notifications outbox, delivery log).
- `channels`: signed webhook and Apprise URLs (the network edge).
- `notifier`: `AlertService`, the periodic tick in the ingest database thread and the sender.
- `web`: the HTTP routes (alert list, ack by API and by link).
"""
