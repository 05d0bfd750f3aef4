"""``waymark streams``: the bus's streams and the collectors' consumer, held against the
settings of the bus URL, and brought in line on request.

Streams and the consumer are created on first use with the URL's settings, and an
existing one is then used as it is, so that an API, a collector and the SDK never fight
over them. Changing ``max_age_s``, ``duplicate_window_s``, ``replicas``, ``ack_wait_s`` or
``max_ack_pending`` in the URL therefore changes nothing by itself: :func:`inspect`
shows where what runs differs from what the URL says, and :func:`apply` changes the
streams and consumers to match (creating missing streams; a consumer that does not
exist yet is made by the first collector, with the URL's settings).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.js import JetStreamContext
from rich.console import Console
from rich.table import Table
from rich.text import Text

from waymark import nats_credentials
from waymark.bus.base import BusSettings
from waymark.bus.nats import consumer_config, ensure_stream, stream_config, stream_subjects
from waymark.errors import Unavailable

#: the stream settings Waymark keeps: (name in the URL, field of StreamConfig).
STREAM_SETTINGS = (
    ("max_age_s", "max_age"),
    ("duplicate_window_s", "duplicate_window"),
    ("replicas", "num_replicas"),
    ("subjects", "subjects"),
)
#: the consumer settings Waymark keeps: (name in the URL, field of ConsumerConfig).
CONSUMER_SETTINGS = (("ack_wait_s", "ack_wait"), ("max_ack_pending", "max_ack_pending"))


@dataclass(frozen=True, slots=True)
class Difference:
    setting: str  # as the bus URL names it
    current: Any
    wanted: Any


@dataclass(slots=True)
class Found:
    """One stream, or the consumer on one stream, as the server has it; or one server's
    sync setting (:mod:`waymark.bus.syncing`)."""

    kind: str  # "stream", "consumer" or "server"
    name: str  # the stream's name, "<stream>/<consumer>", or a server's monitoring URL
    exists: bool  # servers: whether its monitoring endpoint answered
    differences: list[Difference] = field(default_factory=list)
    messages: int | None = None  # streams: messages held now
    changed: bool = False  # set by apply()
    sync: str | None = None  # servers: "always", "120 s", ... (syncing.judge)
    warning: str | None = None  # servers: how acknowledged messages can be lost, or why unknown


@dataclass(slots=True)
class _Seen:
    """What :func:`_look` saw of one stream or consumer, with what :func:`apply` needs."""

    found: Found
    stream: str
    subject: str
    update: Any = None  # the server's config with the URL's settings, where they differ


def _compare(
    current: Any, wanted: Any, names: tuple[tuple[str, str], ...]
) -> tuple[list[Difference], Any]:
    """The settings of ``names`` where ``current`` differs from ``wanted``, and ``current``
    with ``wanted``'s values for them (None when none differs)."""
    out = []
    for setting, attr in names:
        have, want = getattr(current, attr), getattr(wanted, attr)
        if isinstance(want, float) and isinstance(have, int | float):
            same = abs(have - want) < 1e-6
        else:
            same = have == want
        if not same:
            out.append(Difference(setting, have, want))
    if not out:
        return out, None
    return out, dataclasses.replace(current, **{a: getattr(wanted, a) for _, a in names})


async def _look(js: JetStreamContext, settings: BusSettings) -> list[_Seen]:
    seen: list[_Seen] = []
    for _, stream, subject in stream_subjects(settings):
        consumer_name = f"{stream}/{settings.consumer}"
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            seen.append(_Seen(Found("stream", stream, exists=False), stream, subject))
            seen.append(_Seen(Found("consumer", consumer_name, exists=False), stream, subject))
            continue
        wanted = stream_config(stream, subject, settings)
        diffs, update = _compare(info.config, wanted, STREAM_SETTINGS)
        found = Found("stream", stream, True, diffs, info.state.messages)
        seen.append(_Seen(found, stream, subject, update))
        try:
            consumer = await js.consumer_info(stream, settings.consumer)
        except nats.js.errors.NotFoundError:
            seen.append(_Seen(Found("consumer", consumer_name, exists=False), stream, subject))
            continue
        diffs, update = _compare(consumer.config, consumer_config(settings), CONSUMER_SETTINGS)
        seen.append(_Seen(Found("consumer", consumer_name, True, diffs), stream, subject, update))
    return seen


async def _quiet(exc: Exception) -> None:
    """nats-py prints every failed attempt with a traceback unless told otherwise."""


async def _connected(settings: BusSettings, work: Callable[[JetStreamContext], Any]) -> Any:
    where = ",".join(settings.servers)
    try:
        nc = await nats_credentials.connect(
            settings.servers,
            settings.credentials,
            connect_timeout=2,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # each server twice (0 would mean forever)
            reconnect_time_wait=0.1,
            error_cb=_quiet,  # the one error that matters is raised below
        )
    except (OSError, nats.errors.Error) as exc:
        raise Unavailable(f"cannot reach NATS at {where}: {exc!r}") from exc
    try:
        return await work(nc.jetstream(timeout=settings.publish_timeout_s))
    except nats.js.errors.APIError as exc:
        raise ValueError(f"NATS refused: {exc.description or exc!r}") from exc
    except (TimeoutError, nats.errors.Error) as exc:
        raise Unavailable(f"NATS at {where} did not answer: {exc!r}") from exc
    finally:
        await nc.close()


async def inspect(settings: BusSettings) -> list[Found]:
    """Each stream and consumer of ``settings``, and how it differs from them."""
    seen: list[_Seen] = await _connected(settings, lambda js: _look(js, settings))
    return [item.found for item in seen]


async def apply(settings: BusSettings) -> list[Found]:
    """Create missing streams and change every stream and consumer whose settings differ
    from ``settings``; return them as they were found, ``changed`` set where this changed
    them. :class:`ValueError` with the server's words if it refuses a change (for example
    more replicas than a server outside a cluster can hold)."""

    async def work(js: JetStreamContext) -> list[Found]:
        seen = await _look(js, settings)
        for item in seen:
            found = item.found
            if found.kind == "stream" and not found.exists:
                found.changed = await ensure_stream(js, item.stream, item.subject, settings)
            elif item.update is not None:
                if found.kind == "stream":
                    await js.update_stream(item.update)
                else:
                    await js.add_consumer(item.stream, item.update)
                found.changed = True
        kept = [f"{i.found.name}: {d.setting}" for i in await _look(js, settings)
                for d in i.found.differences]  # fmt: skip
        if kept:
            raise ValueError(f"NATS kept settings other than the bus URL's: {', '.join(kept)}")
        return [item.found for item in seen]

    done: list[Found] = await _connected(settings, work)
    return done


def show(found: list[Found], *, as_json: bool, applied: bool) -> None:
    """Print what :func:`inspect` or :func:`apply` found."""
    if as_json:
        sys.stdout.buffer.write(orjson.dumps([dataclasses.asdict(f) for f in found]) + b"\n")
        return
    table = Table(title="Streams, consumers and servers")
    for column in ("kind", "name", "messages", "settings", "state"):
        table.add_column(column, overflow="fold")
    for item in found:
        settings = "; ".join(f"{d.setting} {d.current} -> {d.wanted}" for d in item.differences)
        if item.kind == "server":
            settings = f"sync_interval {item.sync}" if item.sync else ""
            if not item.exists:
                state = "not checked"
            elif item.sync is None:
                state = "JetStream off"
            elif item.warning:
                state = "can lose acknowledged messages"
            else:
                state = "syncs before acknowledging"
        elif item.changed:
            state = "created" if not item.exists else "changed"
        elif not item.exists:
            state = "made by the first collector" if item.kind == "consumer" else "missing"
        else:
            state = "differs" if item.differences else "as the bus URL says"
        messages = "" if item.messages is None else f"{item.messages:,}"
        table.add_row(item.kind, item.name, messages, settings or "-", state)
    console = Console()
    console.print(table)
    for item in found:
        if item.warning:
            label = "warning" if item.exists else "not checked"
            console.print(Text(f"{label}: {item.warning}", style="yellow" if item.exists else ""))
    pending = any(f.differences or (f.kind == "stream" and not f.exists) for f in found)
    if pending and not applied:
        console.print("`waymark streams --apply` changes them to match the bus URL.")
