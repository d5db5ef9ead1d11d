"""xiaodian: the pieces every part of the fresh-food store software shares.

`xiaodian.wire` is the contract between a store's edge agent and the cloud (topics, ids,
JSON messages, signed-command bytes, pickup codes); it imports no application, no MQTT
client and no database. Beside it are low-level helpers without application logic:
`config` (TOML into frozen dataclasses), `mqtt` (MQTT 5 over verified TLS), `backoff` and
`pki` (the deployment's private CA). The applications are the packages `edge`,
`cloud_gateway`, `hw_sim` and `firmware_bridge`; `devstack` composes them, and
`python -m xiaodian` runs its `xiaodian` command. docs/design.md has the layout and why.
"""

__version__ = "0.1.0"
