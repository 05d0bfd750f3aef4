"""Transports by kind, and the one place that decides which one a tracker uses.

=========  ==========================================  ==========================
kind       what it does                                module
=========  ==========================================  ==========================
http       batched ``POST /v1/events``                 :mod:`.http`
nats       JetStream publish in the bus format         :mod:`.nats` (extra ``nats``)
console    one JSON line per event on stderr           :mod:`.console`
noop       nothing                                     :mod:`.noop`
memory     keeps events in a list (for tests)          :mod:`.memory`
=========  ==========================================  ==========================

:func:`resolve` picks one, first rule that applies:

1. the ``transport`` argument: a :class:`Transport` object, or a kind name (with ``url``
   for ``http`` and ``nats``);
2. the ``url`` argument: ``http://`` and ``https://`` mean ``http``, ``nats://`` ``nats``;
3. the environment: ``WAYMARK_TRANSPORT`` (a kind) and ``WAYMARK_URL``, or
   ``WAYMARK_URL`` alone (kind from its scheme);
4. ``noop``, with one logged warning, so an unconfigured tracker never breaks its host.

A wrong argument raises (``ValueError``, or :class:`~waymark.sdk.errors.MissingExtra`
for a missing optional dependency): it is the programmer's to fix. A wrong environment
logs a warning and falls back to ``noop``: a deployment's mistake must not stop the
pipeline it observes.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping

from waymark.config import DEFAULT_URL
from waymark.sdk.transports.base import EventDoc, Transport

__all__ = ["KINDS", "EventDoc", "Transport", "make", "resolve"]

log = logging.getLogger("waymark.sdk")

KINDS = {
    "http": ("http", "HttpTransport"),
    "nats": ("nats", "NatsTransport"),
    "console": ("console", "ConsoleTransport"),
    "noop": ("noop", "NoopTransport"),
    "memory": ("memory", "MemoryTransport"),
}
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
_SCHEMES = {"http": "http", "https": "http", "nats": "nats", "tls": "nats"}

_warned_unconfigured = False


def make(kind: str, url: str | None = None, token: str | None = None) -> Transport:
    """A transport of ``kind``; ``url`` is where ``http`` and ``nats`` deliver, ``token``
    the credential ``http`` sends (default ``WAYMARK_TOKEN``; NATS credentials are in its
    URL)."""
    if kind not in KINDS:
        raise ValueError(f"unknown transport kind {kind!r}; known: {', '.join(KINDS)}")
    module_name, class_name = KINDS[kind]
    module = importlib.import_module(f"{__name__}.{module_name}")
    cls = getattr(module, class_name)
    if kind == "http":
        transport: Transport = cls(url or DEFAULT_URL, token=token)
    elif kind == "nats":
        transport = cls(url or DEFAULT_NATS_URL)
    else:
        transport = cls()
    return transport


def kind_of_url(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise ValueError(f"cannot tell the transport from URL {url!r}: use http(s):// or nats://")
    return _SCHEMES[scheme]


def resolve(
    transport: Transport | str | None = None,
    url: str | None = None,
    environ: Mapping[str, str] | None = None,
    token: str | None = None,
) -> Transport:
    """The transport to use, by the rules in this module's docstring."""
    if isinstance(transport, Transport):
        return transport
    if transport is not None:
        return make(transport, url, token)
    if url:
        return make(kind_of_url(url), url, token)
    env = os.environ if environ is None else environ
    kind = env.get("WAYMARK_TRANSPORT", "").strip().lower()
    env_url = env.get("WAYMARK_URL", "").strip() or None
    if kind or env_url:
        try:
            return make(kind or kind_of_url(env_url or ""), env_url, token)
        except (ValueError, ImportError) as exc:
            log.warning("waymark: WAYMARK_TRANSPORT/WAYMARK_URL unusable (%s); using noop", exc)
            return make("noop")
    global _warned_unconfigured
    if not _warned_unconfigured:
        _warned_unconfigured = True
        log.warning(
            "waymark: no transport configured (argument, WAYMARK_TRANSPORT or WAYMARK_URL); "
            "events are discarded"
        )
    return make("noop")
