"""The Waymark SDK: a client for the API and a tracker that reports pipeline steps.

>>> from waymark.sdk import Client, AsyncClient, Tracker

- :class:`Client` / :class:`AsyncClient`: the ``/v1`` API over httpx, with retries.
- :class:`Tracker`: ``@tracker.step(...)`` and ``with tracker.step(...) as step``; events
  go out in the background through a transport (:mod:`waymark.sdk.transports`).
- :mod:`waymark.sdk.okdata`: okdata-aws's ``status_wrapper`` / ``status_add``.
- :mod:`waymark.sdk.errors`: what the SDK raises.
"""

from waymark.lineage import Lineage
from waymark.model import Summary
from waymark.sdk._api import PathHit, SendResult
from waymark.sdk._retry import Backoff
from waymark.sdk.client import AsyncClient, Client
from waymark.sdk.delivery import Stats
from waymark.sdk.errors import (
    AccessDenied,
    APIError,
    ClientError,
    ConnectionFailed,
    Forbidden,
    InvalidRequest,
    MissingExtra,
    ServerUnavailable,
    TraceNotFound,
    Unauthenticated,
    WaitTimeout,
)
from waymark.sdk.stream import StreamMessage
from waymark.sdk.tracker import (
    Step,
    StepSpec,
    Tracker,
    bind,
    current_step,
    current_trace_id,
    from_lambda_event,
)
from waymark.sdk.transports import Transport

__all__ = [
    "APIError",
    "AccessDenied",
    "AsyncClient",
    "Backoff",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "Forbidden",
    "InvalidRequest",
    "Lineage",
    "MissingExtra",
    "PathHit",
    "SendResult",
    "ServerUnavailable",
    "Stats",
    "Step",
    "StepSpec",
    "StreamMessage",
    "Summary",
    "TraceNotFound",
    "Tracker",
    "Transport",
    "Unauthenticated",
    "WaitTimeout",
    "bind",
    "current_step",
    "current_trace_id",
    "from_lambda_event",
]
