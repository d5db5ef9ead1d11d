"""The cloud database: every record kept exactly once, dead letters beside them.

SQLite by default, PostgreSQL when opened with a `postgresql://` URL. Queries are plain SQL
with parameters that both understand (the upsert `ON CONFLICT ... DO NOTHING / DO UPDATE`
and `RETURNING` included); `cloud_gateway/sql.py` is the thin layer that runs them on either
(placeholders, rows by name, errors, locks, the two DDL words that differ). Each thread opens
its own `Database`.

By responsibility: `schema` (tables, migration), `connection` (backend, transactions),
`writes` (what ingest stores), `reads` (what the API and exports read). `Database` is all of
them in one object; the names below are re-exported so `cloud_gateway.db` keeps its surface.
"""

from __future__ import annotations

from .connection import Connected
from .reads import GAP_FIELDS, READING_FIELDS, ApiReads, DeadLetter
from .schema import PG_EXTRA_DDL, SCHEMA, SCHEMA_VERSION, TABLES
from .writes import (
    AIR_PROBE,
    DEFAULT_POLICY,
    INSERT_AGGREGATE_SQL,
    INSERT_SQL,
    MAX_PARKED_BYTES,
    PRODUCT_PROBE,
    IngestWrites,
)

__all__ = [
    "AIR_PROBE", "DEFAULT_POLICY", "GAP_FIELDS", "INSERT_AGGREGATE_SQL", "INSERT_SQL",
    "MAX_PARKED_BYTES", "PG_EXTRA_DDL", "PRODUCT_PROBE", "READING_FIELDS", "SCHEMA",
    "SCHEMA_VERSION", "TABLES", "Connected", "Database", "DeadLetter",
]


class Database(IngestWrites, ApiReads):
    """One connection to the cloud database, with the ingest writes and the API reads."""
