"""The public surface: exactly the intended names, and the documented error hierarchy."""

from __future__ import annotations

import pytest

import waymark.errors
import waymark.sdk
from waymark.sdk import Client, errors

INTENDED = {
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
    "StreamMessage",
    "Step",
    "StepSpec",
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
}


def test_exported_names_are_the_intended_ones() -> None:
    assert set(waymark.sdk.__all__) == INTENDED
    assert len(waymark.sdk.__all__) == len(INTENDED)
    for name in waymark.sdk.__all__:
        assert getattr(waymark.sdk, name) is not None
        assert not name.startswith("_")


def test_the_error_hierarchy_is_the_documented_one() -> None:
    parents = {
        errors.ClientError: Exception,
        errors.ConnectionFailed: errors.ClientError,
        errors.APIError: errors.ClientError,
        errors.InvalidRequest: errors.APIError,
        errors.AccessDenied: errors.APIError,
        errors.Unauthenticated: errors.AccessDenied,
        errors.Forbidden: errors.AccessDenied,
        errors.TraceNotFound: errors.APIError,
        errors.ServerUnavailable: errors.APIError,
        errors.WaitTimeout: errors.ClientError,
        errors.MissingExtra: errors.ClientError,
    }
    for cls, parent in parents.items():
        assert cls.__bases__[0] is parent, cls
        assert cls.__name__ in (errors.__doc__ or "")
    assert issubclass(errors.MissingExtra, ImportError)


def _error_classes(module: object) -> list[type[BaseException]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == getattr(module, "__name__", None)
    ]


def test_client_errors_and_server_errors_are_apart() -> None:
    """No SDK error is a server error or the reverse, so an ``except`` for one side never
    catches the other."""
    client_side = _error_classes(errors)
    server_side = _error_classes(waymark.errors)
    assert errors.ClientError in client_side
    assert waymark.errors.WaymarkError in server_side
    for client_error in client_side:
        for server_error in server_side:
            assert not issubclass(client_error, server_error), (client_error, server_error)
            assert not issubclass(server_error, client_error), (server_error, client_error)


def test_a_failed_call_raises_no_server_error() -> None:
    client = Client("http://127.0.0.1:9", retries=0, timeout=1)
    with client, pytest.raises(errors.ConnectionFailed) as caught:
        client.summary("t")
    assert not isinstance(caught.value, waymark.errors.WaymarkError)
