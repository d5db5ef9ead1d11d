"""The contract: what both ends of a wire agree on, and nothing else.

Topics, ids, message payloads (telemetry, events, alerts, retail downlink), signed-command
bytes and their Ed25519 signatures, and the pickup-code format with its verifier. Messages
are msgspec Structs with their limits on their fields; `jsonio` is the one strict JSON
reader. It imports no application package, no MQTT client and no database: the edge and the
cloud both use it and never import each other (the import contracts in pyproject.toml
enforce this).
"""
