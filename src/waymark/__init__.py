"""Waymark: status tracking for asynchronous data pipelines."""

__version__ = "0.1.0"
