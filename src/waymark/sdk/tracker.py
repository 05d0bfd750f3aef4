"""The step tracker: one decorator (or ``with`` block) reports a step of a pipeline.

>>> tracker = Tracker(component="csv-to-parquet")           # doctest: +SKIP
>>> @tracker.step(stage="TRANSFORM", trace_id=lambda event, context: event["trace_id"])
... def handler(event, context): ...

A step reports one event when it ends: ``start_time``, ``end_time``, ``duration_ms``,
``status`` SUCCESS, or FAILED with the exception's type and message in ``exception`` and
``trace_status`` FINISHED (``failed_trace_status``); the exception itself propagates
unchanged. Fields added with :meth:`Step.add` go into the same event.

The trace of a step is, first that applies:

1. the ``trace_id`` given to :meth:`Tracker.step`: a string, or a callable over the
   decorated function's arguments (a ``with`` block calls it with none) returning one;
2. the current step's trace, from the context (:mod:`contextvars`): nested steps, tasks
   and threads started with a copied context (``contextvars.copy_context().run``,
   ``asyncio.to_thread``) inherit it; plain threads do not;
3. a new trace (a uuid4). Such a step owns its trace: it reports ``trace_status``
   FINISHED when it ends, unless told otherwise.

The decorator times a call up to its return (a coroutine: its awaited result); for a
generator, use a ``with`` block inside it instead.

Delivery is in the background (:mod:`waymark.sdk.delivery`): a step never waits on the
network and the tracker never raises into user code.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from waymark.model import DEFAULT_TENANT, Event, Status, TraceStatus
from waymark.sdk._retry import Backoff
from waymark.sdk.delivery import END_NS, START_NS, Delivery, Stats
from waymark.sdk.transports import Transport, resolve

log = logging.getLogger("waymark.sdk")

P = ParamSpec("P")
R = TypeVar("R")

TraceIdSource = str | Callable[..., str | None] | None

_current: ContextVar[Step | None] = ContextVar("waymark_step", default=None)

_LISTS = frozenset({"inputs", "outputs", "errors"})
_DICTS = frozenset({"body", "meta", "attributes"})
_FIELDS = frozenset(Event.model_fields) - {"start_time", "end_time"}
_TEXT_MAX = 10_000
_SUCCESS, _FAILED = Status.SUCCESS.value, Status.FAILED.value
_FINISHED, _CONTINUE = TraceStatus.FINISHED.value, TraceStatus.CONTINUE.value


def current_step() -> Step | None:
    """The innermost running step in this context, if any."""
    return _current.get()


def current_trace_id() -> str | None:
    step = _current.get()
    return step.trace_id if step is not None else None


def from_lambda_event(event: Any, context: Any = None) -> str | None:
    """The trace id of a Lambda invoked by a data pipeline's state machine: the event's
    ``execution_name`` (as okdata-aws reads it); None if there is none.

    Fits ``trace_id=`` directly: ``@tracker.step(trace_id=from_lambda_event)``.
    """
    if isinstance(event, Mapping):
        value = event.get("execution_name")
        return value if isinstance(value, str) and value else None
    return None


class Step:
    """A running step: the event it will report when it ends."""

    __slots__ = ("_spec", "_start_ns", "_t0", "_token", "fields", "owns_trace", "trace_id")

    def __init__(self, trace_id: str, owns_trace: bool, spec: StepSpec | None = None) -> None:
        self._spec = spec
        self.trace_id = trace_id
        self.owns_trace = owns_trace
        self.fields: dict[str, Any] = {}
        self._token: Token[Step | None] | None = None
        self._start_ns = time.time_ns()
        self._t0 = time.perf_counter_ns()

    def add(self, **fields: Any) -> None:
        """Add fields to the step's event, as okdata's ``status_add`` does: ``inputs``,
        ``outputs`` and ``errors`` extend, ``body``, ``meta`` and ``attributes`` merge, any
        other native event field (``domain_id``, ``message``, ``path``, ``status``,
        ``trace_status``, ``trace_id``...) replaces. An unknown name is logged and ignored."""
        for name, value in fields.items():
            if name == "trace_id" and isinstance(value, str):
                self.trace_id = value
            elif name not in _FIELDS:
                log.warning("waymark: step.add(%s=...) is not an event field; ignored", name)
            elif name in _LISTS and value is not None:
                if name not in self.fields:  # extend what the step was declared with
                    declared = self._spec._fields.get(name) if self._spec else None
                    self.fields[name] = list(declared or ())
                self.fields[name].extend([value] if isinstance(value, str) else value)
            elif name in _DICTS and value is not None:
                self.fields.setdefault(name, {}).update(value)
            else:
                self.fields[name] = value


class StepSpec:
    """What :meth:`Tracker.step` returns: a decorator for sync and async functions, and a
    context manager (``with`` and ``async with``) that yields the running :class:`Step`."""

    def __init__(
        self,
        tracker: Tracker,
        trace_id: TraceIdSource,
        trace_status: TraceStatus | str | None,
        failed_trace_status: TraceStatus | str | None,
        fields: dict[str, Any],
        flush: float | None = None,
    ) -> None:
        self._tracker = tracker
        self._flush = flush
        self._trace_id = trace_id
        self._trace_status = trace_status and TraceStatus(trace_status).value
        self._failed_trace_status = failed_trace_status and TraceStatus(failed_trace_status).value
        self._fields = fields  # event fields every step of this spec reports; no None values

    # -- as a decorator --------------------------------------------------------------------

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        spec = StepSpec(
            self._tracker,
            self._trace_id,
            self._trace_status,
            self._failed_trace_status,
            {"operation": getattr(fn, "__name__", "?"), **self._fields},
            self._flush,
        )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                step = spec._open_safely(args, kwargs)
                if step is None:
                    return await fn(*args, **kwargs)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    spec._close(step, exc)
                    raise
                spec._close(step, None)
                return result

            return run_async

        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> Any:
            step = spec._open_safely(args, kwargs)
            if step is None:
                return fn(*args, **kwargs)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                spec._close(step, exc)
                raise
            spec._close(step, None)
            return result

        return run

    # -- as a context manager --------------------------------------------------------------

    def __enter__(self) -> Step:
        step = self._open_safely((), {})
        return step if step is not None else Step(_new_trace_id(), owns_trace=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        step = _current.get()
        if step is not None and step._spec is self:
            self._close(step, exc)

    async def __aenter__(self) -> Step:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- opening and closing ---------------------------------------------------------------

    def _open_safely(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Step | None:
        try:
            return self._open(args, kwargs)
        except Exception:
            log.exception("waymark: could not start a step; running it unreported")
            return None

    def _open(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Step:
        source = self._trace_id
        trace_id: str | None = None
        if isinstance(source, str):
            trace_id = source
        elif source is not None:
            try:
                trace_id = source(*args, **kwargs)
            except Exception as exc:
                log.warning("waymark: trace_id callable failed (%r); using the context", exc)
        owns = False
        if not trace_id:
            parent = _current.get()
            if parent is not None:
                trace_id = parent.trace_id
            else:
                trace_id, owns = _new_trace_id(), True
        step = Step(str(trace_id), owns, self)
        step._token = _current.set(step)
        return step

    def _close(self, step: Step, exc: BaseException | None) -> None:
        end_ns = time.time_ns()
        duration_ms = (time.perf_counter_ns() - step._t0) / 1e6
        try:
            token = step._token
            if token is not None:
                step._token = None
                try:  # noqa: SIM105 - contextlib.suppress costs a call on this hot path
                    _current.reset(token)
                except ValueError:  # ended in another context (a finalized async generator)
                    pass
            event = {**self._fields, **step.fields} if step.fields else self._fields.copy()
            event["trace_id"] = step.trace_id
            event[START_NS] = step._start_ns
            event[END_NS] = end_ns
            event["duration_ms"] = duration_ms
            if exc is None:
                if "status" not in event:
                    event["status"] = _SUCCESS
                if "trace_status" not in event:
                    event["trace_status"] = self._trace_status or (
                        _FINISHED if step.owns_trace else _CONTINUE
                    )
            else:
                event["status"] = _FAILED
                event["exception"] = f"{type(exc).__name__}: {exc}"[:_TEXT_MAX]
                event["trace_status"] = (
                    self._failed_trace_status or self._tracker.failed_trace_status.value
                )
            self._tracker._delivery.put(event)
            if self._flush is not None:
                self._tracker.flush(self._flush)
        except Exception:
            log.exception("waymark: could not report a step")


def _new_trace_id() -> str:
    return str(uuid.uuid4())


class Tracker:
    """Reports steps through a transport, in the background.

    ``url`` and ``transport`` choose where events go (see
    :func:`waymark.sdk.transports.resolve`: argument, then ``WAYMARK_TRANSPORT`` /
    ``WAYMARK_URL``, then ``noop`` with a warning). ``component`` names the reporting
    service on every event; ``tenant`` defaults to ``WAYMARK_TENANT``, else ``default``.
    ``max_queue`` bounds the events waiting for delivery (past it they are dropped and
    counted), ``batch_size`` and ``flush_interval`` shape the batches, ``exit_timeout``
    bounds the flush at interpreter exit. ``token`` is the credential the ``http``
    transport sends (default ``WAYMARK_TOKEN``); a server that refuses it (401, 403) is
    warned of once in the log, and never raised into a step.
    """

    def __init__(
        self,
        url: str | None = None,
        transport: Transport | str | None = None,
        component: str | None = None,
        tenant: str | None = None,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        exit_timeout: float = 5.0,
        failed_trace_status: TraceStatus | str = TraceStatus.FINISHED,
        backoff: Backoff | None = None,
        token: str | None = None,
    ) -> None:
        self.transport = resolve(transport, url, token=token)
        self.component = component
        self.tenant = tenant or os.environ.get("WAYMARK_TENANT") or DEFAULT_TENANT
        self.failed_trace_status = TraceStatus(failed_trace_status)
        self._delivery = Delivery(
            self.transport,
            self.tenant,
            max_queue=max_queue,
            batch_size=batch_size,
            interval=flush_interval,
            backoff=backoff,
            exit_timeout=exit_timeout,
        )

    def step(
        self,
        stage: str | None = None,
        operation: str | None = None,
        trace_id: TraceIdSource = None,
        *,
        trace_status: TraceStatus | str | None = None,
        failed_trace_status: TraceStatus | str | None = None,
        component: str | None = None,
        domain: str | None = None,
        domain_id: str | None = None,
        inputs: list[str] | None = None,
        outputs: list[str] | None = None,
        flush: float | None = None,
    ) -> StepSpec:
        """A step, to use as ``@tracker.step(...)`` or ``with tracker.step(...) as step``.

        ``operation`` defaults to the decorated function's name. ``trace_status`` is what
        a successful step reports (default CONTINUE, or FINISHED for a step that started
        its own trace); ``failed_trace_status`` what a failed one reports (default: the
        tracker's, FINISHED). ``flush`` makes the step wait up to that many seconds for
        delivery when it ends: for a Lambda handler or an Airflow task, whose process may
        be frozen or ended without running the exit flush.
        """
        fields: dict[str, Any] = {}
        if component is not None or self.component is not None:
            fields["component"] = component or self.component
        if stage is not None:
            fields["stage"] = stage
        if operation is not None:
            fields["operation"] = operation
        if domain is not None:
            fields["domain"] = domain
        if domain_id is not None:
            fields["domain_id"] = domain_id
        if inputs is not None:
            fields["inputs"] = inputs
        if outputs is not None:
            fields["outputs"] = outputs
        return StepSpec(self, trace_id, trace_status, failed_trace_status, fields, flush)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every step reported so far is delivered; False if ``timeout``
        (seconds) passed first. Never raises."""
        return self._delivery.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> bool:
        """Flush (up to ``timeout``), then stop; later steps are dropped and counted."""
        return self._delivery.close(timeout)

    def stats(self) -> Stats:
        """Counts of events sent, dropped at the queue bound, rejected, lost, retried."""
        return self._delivery.stats()

    @property
    def dropped(self) -> int:
        return self._delivery.stats().dropped

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def bind(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` run in a copy of the current context: for callables handed to plain threads
    or executors, so that steps inside them join the current trace."""
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return context.copy().run(fn, *args, **kwargs)

    return cast(Callable[P, R], run)
