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
    """One stream, or the consumer on one stream, as the server has it."""

    kind: str  # "stream" or "consumer"
    name: str  # the stream's name, or "<stream>/<consumer>"
    exists: bool
    differences: list[Difference] = field(default_factory=list)
    messages: int | None = None  # streams: messages held now
    changed: bool = False  # set by apply()


def _differences(config: Any, wanted: Any, names: tuple[tuple[str, str], ...]) -> list[Difference]:
    out = []
    for setting, attr in names:
        have, want = getattr(config, attr), getattr(wanted, attr)
        if isinstance(want, float) and isinstance(have, int | float):
            same = abs(have - want) < 1e-6
        else:
            same = have == want
        if not same:
            out.append(Difference(setting, have, want))
    return out


async def _look(js: JetStreamContext, settings: BusSettings) -> list[Found]:
    found: list[Found] = []
    for _, stream, subject in stream_subjects(settings):
        try:
            info = await js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            found.append(Found("stream", stream, exists=False))
            found.append(Found("consumer", f"{stream}/{settings.consumer}", exists=False))
            continue
        wanted = stream_config(stream, subject, settings)
        diffs = _differences(info.config, wanted, STREAM_SETTINGS)
        found.append(Found("stream", stream, True, diffs, info.state.messages))
        try:
            consumer = await js.consumer_info(stream, settings.consumer)
        except nats.js.errors.NotFoundError:
            found.append(Found("consumer", f"{stream}/{settings.consumer}", exists=False))
            continue
        diffs = _differences(consumer.config, consumer_config(settings), CONSUMER_SETTINGS)
        found.append(Found("consumer", f"{stream}/{settings.consumer}", True, diffs))
    return found


async def _quiet(exc: Exception) -> None:
    """nats-py prints every failed attempt with a traceback unless told otherwise."""


async def _connected(settings: BusSettings, work: Callable[[JetStreamContext], Any]) -> Any:
    where = ",".join(settings.servers)
    try:
        nc = await nats.connect(
            list(settings.servers),
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
    found: list[Found] = await _connected(settings, lambda js: _look(js, settings))
    return found


async def apply(settings: BusSettings) -> list[Found]:
    """Create missing streams and change every stream and consumer whose settings differ
    from ``settings``; return them as they were found, ``changed`` set where this changed
    them. :class:`ValueError` with the server's words if it refuses a change (for example
    more replicas than a server outside a cluster can hold)."""

    async def work(js: JetStreamContext) -> list[Found]:
        found = await _look(js, settings)
        subjects = {stream: subject for _, stream, subject in stream_subjects(settings)}
        for item in found:
            if item.kind == "stream":
                subject = subjects[item.name]
                if not item.exists:
                    item.changed = await ensure_stream(js, item.name, subject, settings)
                elif item.differences:
                    info = await js.stream_info(item.name)
                    wanted = stream_config(item.name, subject, settings)
                    updates = {attr: getattr(wanted, attr) for _, attr in STREAM_SETTINGS}
                    await js.update_stream(dataclasses.replace(info.config, **updates))
                    item.changed = True
            elif item.exists and item.differences:
                stream, consumer = item.name.split("/", 1)
                current = await js.consumer_info(stream, consumer)
                want = consumer_config(settings)
                updates = {attr: getattr(want, attr) for _, attr in CONSUMER_SETTINGS}
                await js.add_consumer(stream, dataclasses.replace(current.config, **updates))
                item.changed = True
        kept = [f"{f.name}: {d.setting}" for f in await _look(js, settings) for d in f.differences]
        if kept:
            raise ValueError(f"NATS kept settings other than the bus URL's: {', '.join(kept)}")
        return found

    done: list[Found] = await _connected(settings, work)
    return done


def show(found: list[Found], *, as_json: bool, applied: bool) -> None:
    """Print what :func:`inspect` or :func:`apply` found."""
    if as_json:
        sys.stdout.buffer.write(orjson.dumps([dataclasses.asdict(f) for f in found]) + b"\n")
        return
    table = Table(title="Streams and consumers")
    for column in ("kind", "name", "messages", "settings", "state"):
        table.add_column(column, overflow="fold")
    for item in found:
        settings = "; ".join(f"{d.setting} {d.current} -> {d.wanted}" for d in item.differences)
        if item.changed:
            state = "created" if not item.exists else "changed"
        elif not item.exists:
            state = "made by the first collector" if item.kind == "consumer" else "missing"
        else:
            state = "differs" if item.differences else "as the bus URL says"
        messages = "" if item.messages is None else f"{item.messages:,}"
        table.add_row(item.kind, item.name, messages, settings or "-", state)
    console = Console()
    console.print(table)
    pending = any(f.differences or (f.kind == "stream" and not f.exists) for f in found)
    if pending and not applied:
        console.print("`waymark streams --apply` changes them to match the bus URL.")
