"""The cloud's one base error: every refusal or failure the cloud raises on purpose is one.

Callers that must not crash on the cloud's own errors catch `CloudError`; each subclass
says which part refused (accounts, retail, alerts, commands, the database layer).
"""

from __future__ import annotations


class CloudError(Exception):
    """Raised on purpose by the cloud gateway; never an HTTP status (see cloud_gateway.web)."""
