"""The web page: ``GET /`` serves a small page that searches traces and follows one as it
goes (summary, events, errors, data flow), through the ``/v1`` API alone. The browser
sends the tenant as the ``Waymark-Tenant`` header, as any other client does.

Three static files from ``waymark/api/static``; a strict Content-Security-Policy lets the
page run its own script and talk to this server only, and the script puts what producers
sent into the page as text, never as markup.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from starlette.responses import Response

from waymark.errors import NotFound

router = APIRouter(include_in_schema=False)

_STATIC = files("waymark.api") / "static"
_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
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
