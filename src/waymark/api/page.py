"""The web page: ``GET /`` serves a page that lists and searches traces (kept up to date),
shows an overview by dataset, and follows one trace as it goes (timeline, failures, data
flow graph, events), through the ``/v1`` API alone. The browser sends the tenant as the
``Waymark-Tenant`` header and a key or token as ``Authorization: Bearer``, as any other
client does.

Static files from ``waymark/api/static``, open without credentials (they hold no data); a
strict Content-Security-Policy lets the page run its own scripts and talk to this server
only, and the scripts put what producers sent into the page as text, never as markup.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from starlette.responses import Response

from waymark.errors import NotFound

router = APIRouter(include_in_schema=False)

_STATIC = files("waymark.api") / "static"
_JS = "text/javascript; charset=utf-8"
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
    "app.js": _JS,
    "api.js": _JS,
    "util.js": _JS,
    "timeline.js": _JS,
    "graph.js": _JS,
    "stream.js": _JS,
    "dagre.min.js": _JS,  # @dagrejs/dagre 3.1.3, MIT (dagre.LICENSE.txt): the graph's layout
    "dagre.LICENSE.txt": "text/plain; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    return Response(_STATIC.joinpath(name).read_bytes(), media_type=_TYPES[name], headers=HEADERS)


@router.get("/")
async def page() -> Response:
    return _file("index.html")


@router.get("/ui/{name}")
async def asset(name: str) -> Response:
    if name == "index.html" or name not in _TYPES:
        raise NotFound(f"no file {name!r} here")
    return _file(name)
