"""Who may call what: the role each route needs (:data:`NEEDS`, the one place it is
declared) and :class:`AccessGuard`, the middleware that enforces it on every request.

With authentication on (``WAYMARK_AUTH``), every request but those of :data:`OPEN`
routes must carry ``Authorization: Bearer <API key or token>``. The guard finds the
route a request is for, as the router will, and then:

1. no credential, one no way in recognises, or one refused (expired, revoked, bad
   signature): :class:`~waymark.errors.Unauthenticated`, 401 with
   ``WWW-Authenticate: Bearer``;
2. the tenant of the request (``Waymark-Tenant``, or GSM's ``data-partition-id``; a
   credential of exactly one tenant may leave it out) must be one where the credential
   holds the route's role, else :class:`~waymark.errors.Forbidden` (403);
   (``/metrics`` has no tenant: a ``metrics`` or ``reader`` role in any tenant will do);
3. the request goes on with the principal in ``scope["waymark.principal"]`` and its
   tenant in ``scope["waymark.tenant"]`` (:mod:`waymark.api.deps` reads both), where
   the routes check datasets: writes of events of other datasets are refused (403), and
   reads leave other datasets' traces out (404 for one asked for by id).

A route missing from :data:`NEEDS` needs ``admin`` (closed until declared); a test walks
every route the app serves and fails on any such route. Requests for no route need a
valid credential before they are told 404. With authentication off the guard passes
every request through untouched.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from waymark.api.deps import PRINCIPAL, TENANT, TENANT_HEADER
from waymark.api.routing import served_routes
from waymark.auth.grants import Authenticator, Principal, Role
from waymark.errors import Forbidden, Unauthenticated, Unavailable, WaymarkError
from waymark.ingest import check_tenant

log = logging.getLogger("waymark.api")

PARTITION_HEADER = "data-partition-id"


@dataclass(frozen=True, slots=True)
class Need:
    """What a route needs: ``role`` in the request's tenant (read from ``tenant_header``);
    ``role`` None with ``open`` False means any valid credential, of no tenant in
    particular; ``open`` means no credential at all."""

    role: Role | None
    tenant_header: str = TENANT_HEADER
    open: bool = False
    #: the role in any one tenant will do, and the request has no tenant
    any_tenant: bool = False

    @property
    def header_key(self) -> bytes:
        """The tenant header's name as an ASGI scope holds it."""
        return _HEADER_KEYS[self.tenant_header]


_HEADER_KEYS = {name: name.lower().encode() for name in (TENANT_HEADER, "data-partition-id")}

READ = Need(Role.READER)
WRITE = Need(Role.WRITER)
ADMIN = Need(Role.ADMIN)
SIGNED_IN = Need(None)  # any valid credential (the API's description)
METRICS = Need(Role.METRICS, any_tenant=True)  # a metrics key, or a reader of any tenant
OPEN = Need(None, open=True)

#: The one declaration of what every route needs, by (method, path as the route has it).
#: HEAD needs what GET needs.
NEEDS: dict[tuple[str, str], Need] = {
    # /v1
    ("POST", "/v1/events"): WRITE,
    ("POST", "/v1/traces"): WRITE,
    ("GET", "/v1/traces/{trace_id:summary_trace_id}"): READ,
    ("DELETE", "/v1/traces/{trace_id:summary_trace_id}"): ADMIN,
    ("GET", "/v1/traces/{trace_id:path}/events"): READ,
    ("GET", "/v1/traces/{trace_id:path}/lineage"): READ,
    ("GET", "/v1/traces/{trace_id:path}/errors"): READ,
    ("GET", "/v1/traces/{trace_id:path}/paths"): READ,
    ("GET", "/v1/traces"): READ,
    ("GET", "/v1/stream"): READ,
    ("GET", "/v1/paths"): READ,
    ("GET", "/v1/overview"): READ,
    ("POST", "/v1/webhooks"): ADMIN,
    ("GET", "/v1/webhooks"): ADMIN,
    ("GET", "/v1/webhooks/{webhook_id}"): ADMIN,
    ("DELETE", "/v1/webhooks/{webhook_id}"): ADMIN,
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): ADMIN,
    # okdata status API
    ("POST", "/status"): WRITE,
    ("POST", "/status/{trace_id}"): WRITE,
    ("GET", "/status/{trace_id}"): READ,
    ("GET", "/status-from-path/{b64:path}"): READ,
    # OSDU GSM: the tenant is the data-partition-id
    ("POST", "/api/status-publisher/v1/status"): Need(Role.WRITER, PARTITION_HEADER),
    ("POST", "/api/status-publisher/v1/dataset-details"): Need(Role.WRITER, PARTITION_HEADER),
    ("POST", "/api/status-processor/v1/status/query"): Need(Role.READER, PARTITION_HEADER),
    ("GET", "/api/status-processor/v1/dataset-details"): Need(Role.READER, PARTITION_HEADER),
    # OpenLineage
    ("POST", "/api/v1/lineage"): WRITE,
    # AWS Step Functions (Amazon EventBridge)
    ("POST", "/aws/step-functions/events"): WRITE,
    # the API's description
    ("GET", "/openapi.json"): SIGNED_IN,
    ("GET", "/docs"): SIGNED_IN,
    ("GET", "/docs/oauth2-redirect"): SIGNED_IN,
    ("GET", "/redoc"): SIGNED_IN,
    # open: health checks and the web page (which asks for a key or token to read)
    ("GET", "/healthz"): OPEN,
    ("GET", "/readyz"): OPEN,
    ("GET", "/"): OPEN,
    ("GET", "/ui/{name}"): OPEN,
    # the files of Swagger UI and ReDoc (the pages that use them need a credential)
    ("GET", "/docs/static"): OPEN,
    # the server's metrics: counts over every tenant, no tenant's data
    ("GET", "/metrics"): METRICS,
}


def declared(route: BaseRoute) -> dict[str, Need | None]:
    """The need of each method of ``route`` (None for one not declared)."""
    path = getattr(route, "path", "")
    methods = getattr(route, "methods", None) or {"GET"}
    return {method: NEEDS.get(("GET" if method == "HEAD" else method, path)) for method in methods}


def _route_of(routes: Sequence[BaseRoute], scope: Scope) -> tuple[BaseRoute | None, bool]:
    """The route the router will take for ``scope`` and whether it takes the request's
    method: the first full match, else the first partial one (a method the route does not
    allow: the router answers 405)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route, True
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial, False


def _need(route: BaseRoute | None, method: str) -> Need:
    """What a request for ``route`` with ``method`` needs; one for no route, or for a
    method the route does not take, needs a valid credential before it is told so."""
    if route is None:
        return SIGNED_IN
    path = getattr(route, "path", "")
    need = NEEDS.get(("GET" if method == "HEAD" else method, path))
    if need is None:
        log.warning("route %s %s declares no role: it needs admin", method, path)
        return ADMIN
    return need


_BEARER = b"bearer "


def credential_of(scope: Scope) -> str:
    """The bearer credential of a request; :class:`Unauthenticated` if there is none."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value[:7].lower() != _BEARER or not value[7:].strip():
                raise Unauthenticated("Authorization must be 'Bearer <API key or token>'")
            return str(value[7:].strip().decode("latin-1"))
    raise Unauthenticated("no credential: send 'Authorization: Bearer <API key or token>'")


UNKNOWN = "the credential is not an API key or token this server accepts"


def tenant_for(principal: Principal, need: Need, scope: Scope) -> str:
    """The request's tenant, once the principal may act in it with the needed role."""
    header = need.header_key
    given = next((v for n, v in scope["headers"] if n == header), None)
    assert need.role is not None
    return _allowed_tenant(principal, given, need.role, need.tenant_header)


@functools.lru_cache(maxsize=4096)
def _allowed_tenant(principal: Principal, given: bytes | None, role: Role, header: str) -> str:
    """:func:`tenant_for`'s decision, remembered: a credential's requests mostly ask the
    same of it (a refusal is an exception, never remembered)."""
    tenant = check_tenant(
        given.decode("latin-1") if given else principal.only_tenant(), ("header", header)
    )
    if principal.allows(tenant, role):
        return tenant
    if any(g.tenant in (tenant, "*") for g in principal.grants):
        raise Forbidden(f"the credential holds no {role} role in tenant {tenant!r}")
    raise Forbidden(f"the credential holds no role in tenant {tenant!r}")


class AccessGuard:
    """Pure ASGI middleware, inside :class:`~waymark.api.problems.RequestGuard` (which
    answers its errors in the door's shape) and ahead of the router.

    ``on``: whether authentication is on. The authenticators are read from
    ``app.state.authenticators``, set at startup
    (:func:`waymark.auth.authenticators.build_authenticators`); until they are, a request
    that needs a credential is answered 503, never let through."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute], on: bool) -> None:
        self.app = app
        self.on = on
        self._given = routes
        self._routes: list[BaseRoute] | None = None
        #: the route of each (method, path) a route without parameters answered
        self._fixed: dict[tuple[str, str], BaseRoute] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.on or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route: BaseRoute | None = self._fixed.get((scope["method"], scope["path"]))
        full = route is not None
        if route is None:
            route, full = self._route(scope)
        need = _need(route, scope["method"]) if full else SIGNED_IN
        if not need.open:
            try:
                authenticators: Sequence[Authenticator] | None = getattr(
                    scope["app"].state, "authenticators", None
                )
                if not authenticators:
                    raise Unavailable("the server is starting: its authentication is not ready")
                credential = credential_of(scope)
                for authenticator in authenticators:  # the first that recognises it decides
                    principal = await authenticator.authenticate(credential)
                    if principal is not None:
                        break
                else:
                    raise Unauthenticated(UNKNOWN)
                scope[PRINCIPAL] = principal
                if need.any_tenant:
                    assert need.role is not None
                    if not principal.holds_anywhere(need.role):
                        raise Forbidden(f"the credential holds no {need.role} role in any tenant")
                elif need.role is not None:
                    scope[TENANT] = tenant_for(principal, need, scope)
            except WaymarkError:
                if route is not None:  # answered in the shape of the route's door
                    scope["route"] = route
                raise
        await self.app(scope, receive, send)

    def _route(self, scope: Scope) -> tuple[BaseRoute | None, bool]:
        if self._routes is None:  # every route is in place once requests come
            self._routes = list(served_routes(self._given))
        route, full = _route_of(self._routes, scope)
        if full and route is not None and not getattr(route, "param_convertors", True):
            # A path of a route without parameters is one of few: remember it.
            self._fixed[(scope["method"], scope["path"])] = route
        return route, full
