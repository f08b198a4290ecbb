"""The transaction as a pure fold of its events, and the only moves API.md allows (no I/O here)."""
