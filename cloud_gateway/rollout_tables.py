"""The tables of cloud_gateway/rollouts.py (apart, so db.schema imports no domain code)."""

SCHEMA = """
-- Staged rollouts of an artefact to stores (cloud_gateway/rollouts.py, docs/firmware_update.md).
CREATE TABLE IF NOT EXISTS rollouts (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    device TEXT NOT NULL,
    url TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    version TEXT NOT NULL,
    plan TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_stores (
    rollout TEXT NOT NULL,
    store TEXT NOT NULL,
    command_id TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (rollout, store)
);
"""
TABLES = ("rollouts", "rollout_stores")
