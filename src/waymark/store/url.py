"""Store URLs: the one place a ``WAYMARK_STORE`` / ``--store`` value is read.

``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db`` names a SQLite file;
``postgresql://user:password@host:port/db?options=...`` (``postgres://`` and SQLAlchemy's
``postgresql+psycopg://`` are taken too) a PostgreSQL database, as libpq reads it.
Errors are :class:`ValueError` naming what is wrong with the URL, never echoing a
password.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["sqlite", "postgresql"]

_SQLITE = "sqlite:///"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://", "postgresql+psycopg://")
_EXPECTED = "use sqlite:///path/to/file.db or postgresql://user@host/db"


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL.

    ``target``: the SQLite file's path, or the libpq conninfo (a ``postgresql://`` URL);
    ``shown``: how messages and logs name the store (the file, or database, host and port
    without user or password)."""

    kind: Kind
    target: str
    shown: str

    @property
    def sqlalchemy_url(self) -> str:
        """The URL as SQLAlchemy takes it (the migrations run through it)."""
        if self.kind == "sqlite":
            return _SQLITE + self.target
        return "postgresql+psycopg://" + self.target[len("postgresql://") :]


def parse_store_url(url: str) -> StoreURL:
    """Read a store URL; :class:`ValueError` saying what is wrong if it is not one."""
    if not url:
        raise ValueError(f"the store URL is empty: {_EXPECTED}")
    scheme, sep, _ = url.partition(":")
    if scheme == "sqlite":
        return _sqlite(url)
    if sep and scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return _postgresql(url)
    shown = scheme if sep else "(no scheme)"
    raise ValueError(f"unsupported store URL scheme {shown!r}: {_EXPECTED}")


def _sqlite(url: str) -> StoreURL:
    if not url.startswith(_SQLITE):
        raise ValueError(
            f"{url!r} is not a SQLite file URL: expected three slashes, sqlite:///relative.db"
            " or sqlite:////absolute/path.db"
        )
    path = url[len(_SQLITE) :]
    if path in ("", ":memory:"):
        raise ValueError(f"{url!r}: Waymark's SQLite store needs a file (sqlite:///path.db)")
    if "?" in path:
        raise ValueError(f"{url!r}: SQLite store URLs take no options (nothing after '?')")
    return StoreURL("sqlite", path, path)


def _postgresql(url: str) -> StoreURL:
    import psycopg  # only PostgreSQL URLs need it

    conninfo = url
    for prefix in _POSTGRES_PREFIXES:
        if url.startswith(prefix):
            conninfo = "postgresql://" + url[len(prefix) :]
            break
    else:
        raise ValueError(f"not a PostgreSQL URL: expected postgresql://... ({_EXPECTED})")
    conninfo = _one_scheme(conninfo)
    try:
        info = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        # libpq's message names the bad part; it quotes no password.
        raise ValueError(f"not a valid PostgreSQL URL: {exc}") from exc
    _check_hosts(info)
    host = info.get("host") or "localhost"
    shown = f"PostgreSQL {info.get('dbname') or ''}@{host}:{info.get('port') or 5432}"
    return StoreURL("postgresql", conninfo, shown)


def _one_scheme(conninfo: str) -> str:
    """Several hosts written each with the scheme (``postgresql://a:5432,postgresql://b/db``)
    as libpq reads several hosts (``postgresql://a:5432,b/db``): libpq would take the second
    scheme for a host name and the rest for the database."""
    head = "postgresql://"
    rest = conninfo[len(head) :]
    for prefix in _POSTGRES_PREFIXES:
        rest = rest.replace("," + prefix, ",")
    if "://" in rest.partition("?")[0]:
        raise ValueError(
            "not a valid PostgreSQL URL: a scheme in the middle; write several hosts as"
            " postgresql://host1:5432,host2:5432/db"
        )
    return head + rest


def _check_hosts(info: dict[str, Any]) -> None:
    """Each host named, each port a number from 1 to 65535 (or left out), and as many
    ports as hosts, or one for all: what libpq would only find out when it connects."""
    hosts = str(info.get("host") or "").split(",")
    ports = str(info.get("port") or "").split(",")
    if len(hosts) > 1 and not all(hosts):
        raise ValueError("not a valid PostgreSQL URL: an empty host in the host list")
    for port in ports:
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"not a valid PostgreSQL URL: port {port!r} is not 1 to 65535")
    if len(ports) not in (1, len(hosts)):
        raise ValueError(f"not a valid PostgreSQL URL: {len(ports)} ports for {len(hosts)} hosts")
