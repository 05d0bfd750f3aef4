"""Alembic migrations of the Waymark schema; run them with ``waymark migrate``."""
