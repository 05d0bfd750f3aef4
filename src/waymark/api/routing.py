"""What a router serves, seen from outside it (the access guard, the error shapes and the
metrics each need the routes a request could go to)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from starlette.routing import BaseRoute


def served_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route a router serves, in the order it tries them, routers included in it
    opened up (they are included without a prefix: their routes carry their full paths)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from served_routes(included.routes)
        else:
            yield route
