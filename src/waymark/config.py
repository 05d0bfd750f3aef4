"""Configuration, resolved in one place: explicit argument, then environment, then default.

| setting            | environment          | default                      |
| ------------------ | -------------------- | ---------------------------- |
| store URL          | ``WAYMARK_STORE``     | ``sqlite:///./waymark.db``   |
| bus URL            | ``WAYMARK_BUS``       | empty: direct, no bus        |
| pipelines file     | ``WAYMARK_PIPELINES`` | none: built-in default rule  |
| server URL (CLI)   | ``WAYMARK_URL``       | ``http://127.0.0.1:8000``    |
| tenant (CLI)       | ``WAYMARK_TENANT``    | ``default``                  |
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_STORE = "sqlite:///./waymark.db"
DEFAULT_URL = "http://127.0.0.1:8000"


def _pick(explicit: str | None, env: str, default: str) -> str:
    if explicit is not None:
        return explicit
    return os.environ.get(env, default)


@dataclass(frozen=True, slots=True)
class Settings:
    store: str = DEFAULT_STORE
    bus: str = ""
    pipelines: str = ""

    @classmethod
    def resolve(
        cls, store: str | None = None, bus: str | None = None, pipelines: str | None = None
    ) -> Settings:
        return cls(
            store=_pick(store, "WAYMARK_STORE", DEFAULT_STORE),
            bus=_pick(bus, "WAYMARK_BUS", ""),
            pipelines=_pick(pipelines, "WAYMARK_PIPELINES", ""),
        )


def server_url(explicit: str | None = None) -> str:
    return _pick(explicit, "WAYMARK_URL", DEFAULT_URL).rstrip("/")
