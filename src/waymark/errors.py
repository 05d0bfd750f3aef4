"""Errors Waymark raises, grouped by who should catch them.

::

    WaymarkError
    ├── BadRequest            the caller sent something malformed: not JSON, the wrong
    │   │                     kind of JSON value, bytes a backend cannot hold (400)
    │   ├── InvalidFields     named fields have wrong values (422)
    │   │   └── BadCursor     a paging cursor this server did not give out
    │   └── TooLarge          body or batch over the limit (413)
    ├── Unauthenticated       no credential, or one that is not valid (401)
    ├── Forbidden             a valid credential without the role, tenant or dataset (403)
    ├── NotFound              no such trace (404)
    └── Unavailable           a backend (store, bus) cannot be reached now (503)
        └── SchemaOutdated    the store's schema is older than this code needs

The API maps this hierarchy to HTTP once, in :mod:`waymark.api.problems`.
"""

from __future__ import annotations


class WaymarkError(Exception):
    """Base of every error Waymark raises on purpose."""


class BadRequest(WaymarkError):
    """The input is wrong; ``errors`` lists ``{"loc": [...], "msg": ...}`` per bad part."""

    def __init__(self, detail: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class InvalidFields(BadRequest):
    """The input is well-formed, but fields in it have wrong values (``errors`` names each)."""


class BadCursor(InvalidFields):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, [{"loc": ["query", "cursor"], "msg": detail}])


class TooLarge(BadRequest):
    pass


class Unauthenticated(WaymarkError):
    """No credential, or one that is malformed, unknown, expired or revoked; answered 401
    with ``WWW-Authenticate: Bearer``. ``detail`` never contains the credential."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Forbidden(WaymarkError):
    """A valid credential that lacks the role, tenant or dataset the request needs;
    ``errors`` names the fields of a refused write (``{"loc": [...], "msg": ...}``)."""

    def __init__(self, detail: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class NotFound(WaymarkError):
    pass


class Unavailable(WaymarkError):
    """A backend is down; ``retry_after`` (seconds) tells the caller when to try again."""

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class SchemaOutdated(Unavailable):
    pass
