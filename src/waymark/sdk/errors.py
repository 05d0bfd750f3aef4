"""Errors the SDK raises, grouped by who should catch them.

::

    ClientError                 catch this to catch every SDK error
    ├── ConnectionFailed        the server could not be reached (refused, DNS, timeout),
    │                           even after retries; ``retry_after`` is None
    ├── APIError                the server answered with a problem: ``status``, ``detail``,
    │   │                       ``errors`` (RFC 9457 body, each ``{"loc", "msg"}``)
    │   ├── InvalidRequest      400, 413, 422: fix the request, retrying will not help
    │   ├── AccessDenied        401 or 403: fix the credential (``token=``, ``WAYMARK_TOKEN``)
    │   │   ├── Unauthenticated 401: no token, or one the server does not accept
    │   │   └── Forbidden       403: a valid token without the role, tenant or dataset
    │   ├── TraceNotFound       404: no such trace in this tenant
    │   └── ServerUnavailable   429 or 5xx, even after retries; ``retry_after`` if the
    │                           server said when to come back
    ├── WaitTimeout             ``wait()`` gave up before the trace was done; ``summary``
    │                           is the last one seen (None if the trace never appeared)
    └── MissingExtra            a transport needs an optional dependency (also an
                                ``ImportError``); the message names the extra

``ClientError`` is a root of its own, apart from the server's ``waymark.errors.WaymarkError``:
a program that runs the SDK beside a server (a test, a worker that embeds both) can catch
one without ever catching the other, and the SDK imports nothing of the server.

Errors of httpx and nats-py never escape: the client and the transports translate them
here, keeping the original as ``__cause__``. The tracker raises none of these into user
code: its delivery runs in the background and counts what it could not deliver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from waymark.model import Summary


class ClientError(Exception):
    """Base of every error the SDK raises; no server error derives from it."""

    retry_after: float | None = None


class ConnectionFailed(ClientError):
    """The server could not be reached (connection refused, DNS, timeout, broken stream)."""


class APIError(ClientError):
    """The server answered with an error status and (usually) a problem+json body."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.retry_after = retry_after


class InvalidRequest(APIError):
    """400, 413 or 422: the request is wrong; ``errors`` names the fields."""


class AccessDenied(APIError):
    """401 or 403: the server does not let this credential do this; retrying will not help."""


class Unauthenticated(AccessDenied):
    """401: no token was sent, or the server does not accept it (unknown, expired)."""


class Forbidden(AccessDenied):
    """403: the token is valid, but lacks the role, tenant or dataset the call needs."""


class TraceNotFound(APIError):
    """404: no such trace in this tenant."""


class ServerUnavailable(APIError):
    """429 or 5xx: the server cannot answer now; retried before it is raised."""


class WaitTimeout(ClientError):
    """The trace was not done before the wait's timeout."""

    def __init__(self, trace_id: str, timeout: float, summary: Summary | None) -> None:
        state = "never appeared" if summary is None else f"is {summary.state}"
        super().__init__(f"trace {trace_id!r} {state} after waiting {timeout:g} s")
        self.trace_id = trace_id
        self.summary = summary


class MissingExtra(ClientError, ImportError):
    """An optional dependency is not installed; the message says which extra to install."""

    def __init__(self, feature: str, extra: str, package: str) -> None:
        super().__init__(
            f"the {feature} needs {package}: install it with pip install 'waymark-status[{extra}]'"
        )
        self.extra = extra


def api_error(status: int, body: Any, retry_after: float | None = None) -> APIError:
    """The error for an error response; ``body`` is its parsed JSON (a problem) or None."""
    detail = f"HTTP {status}"
    errors: list[dict[str, Any]] = []
    if isinstance(body, dict):
        if isinstance(body.get("detail"), str):
            detail = body["detail"]
        if isinstance(body.get("errors"), list):
            errors = [e for e in body["errors"] if isinstance(e, dict)]
    kind: type[APIError]
    if status == 404:
        kind = TraceNotFound
    elif status == 401:
        kind = Unauthenticated
    elif status == 403:
        kind = Forbidden
    elif status == 429 or status >= 500:
        kind = ServerUnavailable
    elif 400 <= status < 500:
        kind = InvalidRequest
    else:
        kind = APIError
    return kind(status, detail, errors, retry_after)
