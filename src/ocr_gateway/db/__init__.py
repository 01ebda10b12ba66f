"""Persistence: models, the engine and sessions, and every query (in `repository`)."""
