"""okdata-aws's ``status_wrapper`` and ``status_add``, reporting through a Waymark tracker.

A Lambda written for okdata-aws switches by changing one import::

    from waymark.sdk.okdata import status_wrapper, status_add   # was: okdata.aws.status

    @status_wrapper()
    def handler(event, context):
        status_add(domain="dataset", domain_id="parking-fees/1", s3_path="raw/...")
        ...

As in okdata-aws, the trace is the event's ``execution_name`` (an event without one is
not reported), the operation is the handler's name, the component is ``SERVICE_NAME``, the
user is the API Gateway authorizer's ``principalId`` and an exception reports FAILED and
FINISHED and propagates. okdata's field names are mapped to Waymark's (``status_body`` to
``body``, ``s3_path`` to ``path``, ``trace_event_status`` FAILED to ``status`` FAILED);
``start_time``, ``end_time`` and ``duration`` are measured by the tracker. Unlike a
long-running process, a Lambda may be frozen as soon as the handler returns, so the
wrapper flushes (for up to :data:`FLUSH_TIMEOUT_S`) before returning.

The tracker is made on first use from the environment (``WAYMARK_URL``,
``WAYMARK_TRANSPORT``, ``WAYMARK_TENANT``); :func:`use` sets another. okdata's
``sdk_config`` argument is accepted and ignored, unless it is a :class:`Tracker`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, TypeVar

from waymark.sdk.tracker import Tracker, current_step, from_lambda_event

__all__ = ["FLUSH_TIMEOUT_S", "status_add", "status_wrapper", "use"]

log = logging.getLogger("waymark.sdk")

R = TypeVar("R")
Handler = Callable[[Any, Any], R]

FLUSH_TIMEOUT_S = 2.0
_RENAMED = {"status_body": "body", "s3_path": "path"}
_MEASURED = frozenset({"start_time", "end_time", "duration"})

_tracker: Tracker | None = None


def use(tracker: Tracker | None) -> None:
    """Report through ``tracker`` (None: make one from the environment on next use)."""
    global _tracker
    _tracker = tracker


def _the_tracker() -> Tracker:
    global _tracker
    if _tracker is None:
        _tracker = Tracker()
    return _tracker


def status_wrapper(sdk_config: Any = None) -> Any:
    """Decorate a Lambda handler ``handler(event, context)`` to report it as one step.

    Used as ``@status_wrapper()`` (okdata-aws 6) or ``@status_wrapper`` (older releases).
    """
    if callable(sdk_config) and not isinstance(sdk_config, Tracker):
        return _wrap(sdk_config, None)
    tracker = sdk_config if isinstance(sdk_config, Tracker) else None
    return lambda handler: _wrap(handler, tracker)


def _wrap(handler: Handler[R], tracker: Tracker | None) -> Handler[R]:
    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> R:
        trace_id = from_lambda_event(event)
        if trace_id is None:
            log.warning("waymark: the event has no execution_name; this call is not reported")
            return handler(event, context)
        the_tracker = tracker or _the_tracker()
        spec = the_tracker.step(
            trace_id=trace_id,
            operation=getattr(handler, "__name__", None),
            component=os.getenv("SERVICE_NAME"),
            flush=FLUSH_TIMEOUT_S,
        )
        with spec as step:
            step.add(**_lambda_fields(event, context))
            return handler(event, context)

    return wrapper


def status_add(**kwargs: Any) -> None:
    """Add fields to the running step's event (okdata names); nothing if no step runs."""
    step = current_step()
    if step is None:
        return
    fields: dict[str, Any] = {}
    for name, value in kwargs.items():
        value = _plain(value)
        if name in _MEASURED:
            continue
        if name == "trace_event_status":
            fields["status"] = "FAILED" if value == "FAILED" else "SUCCESS"
        elif name == "exception" and value is not None:
            fields["exception"] = str(value)
        else:
            fields[_RENAMED.get(name, name)] = value
    step.add(**fields)


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    return value


def _lambda_fields(event: Any, context: Any) -> dict[str, Any]:
    """``user`` and ``meta`` as okdata-aws reads them from the event and Lambda context."""
    request = (event.get("requestContext") or {}) if isinstance(event, Mapping) else {}
    authorizer = request.get("authorizer") or {}
    meta = {
        "function_name": getattr(context, "function_name", None),
        "function_version": getattr(context, "function_version", None),
        "function_stage": request.get("stage"),
        "function_api_id": request.get("apiId"),
        "git_rev": os.getenv("GIT_REV"),
        "git_branch": os.getenv("GIT_BRANCH"),
    }
    fields: dict[str, Any] = {"meta": {k: v for k, v in meta.items() if v is not None}}
    if authorizer.get("principalId"):
        fields["user"] = authorizer["principalId"]
    return fields
