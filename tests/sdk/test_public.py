"""The public surface: exactly the intended names, and the documented error hierarchy."""

from __future__ import annotations

import waymark.sdk
from waymark.errors import WaymarkError
from waymark.sdk import errors

INTENDED = {
    "APIError",
    "AsyncClient",
    "Backoff",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "InvalidRequest",
    "Lineage",
    "MissingExtra",
    "PathHit",
    "SendResult",
    "ServerUnavailable",
    "Stats",
    "Step",
    "StepSpec",
    "Summary",
    "TraceNotFound",
    "Tracker",
    "Transport",
    "WaitTimeout",
    "bind",
    "current_step",
    "current_trace_id",
    "from_lambda_event",
}


def test_exported_names_are_the_intended_ones() -> None:
    assert set(waymark.sdk.__all__) == INTENDED
    assert len(waymark.sdk.__all__) == len(INTENDED)
    for name in waymark.sdk.__all__:
        assert getattr(waymark.sdk, name) is not None
        assert not name.startswith("_")


def test_the_error_hierarchy_is_the_documented_one() -> None:
    parents = {
        errors.ClientError: WaymarkError,
        errors.ConnectionFailed: errors.ClientError,
        errors.APIError: errors.ClientError,
        errors.InvalidRequest: errors.APIError,
        errors.TraceNotFound: errors.APIError,
        errors.ServerUnavailable: errors.APIError,
        errors.WaitTimeout: errors.ClientError,
        errors.MissingExtra: errors.ClientError,
    }
    for cls, parent in parents.items():
        assert cls.__bases__[0] is parent, cls
        assert cls.__name__ in (errors.__doc__ or "")
    assert issubclass(errors.MissingExtra, ImportError)


def test_statuses_map_to_errors() -> None:
    cases = {400: "InvalidRequest", 413: "InvalidRequest", 422: "InvalidRequest"}
    cases |= {404: "TraceNotFound", 429: "ServerUnavailable", 500: "ServerUnavailable"}
    cases |= {503: "ServerUnavailable", 302: "APIError"}
    for status, name in cases.items():
        error = errors.api_error(status, {"detail": "d", "errors": [{"loc": ["x"]}]}, 1.5)
        assert type(error).__name__ == name, status
        assert (error.status, error.detail, error.errors, error.retry_after) == (
            status,
            "d",
            [{"loc": ["x"]}],
            1.5,
        )
    assert errors.api_error(502, "not a problem").detail == "HTTP 502"
