"""Configuration that cannot be right stops ``serve``, ``collect`` and ``migrate`` before
they touch anything, with a message that names the part; the host lists users write are
read as the servers they name, or refused, never read as something else."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from waymark.bus.base import BusSettings, parse_servers
from waymark.cli import app
from waymark.config import KNOWN, ClientLimits, unknown_settings
from waymark.store.url import parse_store_url

THREE = ("nats://a:4222", "nats://b:4222", "nats://c:4222")


@pytest.mark.parametrize(
    "url",
    [
        "nats://a:4222,nats://b:4222,nats://c:4222",
        "nats://a:4222,b:4222,c:4222",
        "nats://a:4222,nats://b:4222,c:4222",
    ],
)
def test_a_host_list_with_or_without_each_scheme_is_the_same_servers(url: str) -> None:
    assert BusSettings.from_url(url + "?replicas=3").servers == THREE
    assert parse_servers(url) == (THREE, "")


def test_credentials_ipv6_and_tls_are_kept_per_server() -> None:
    assert parse_servers("tls://u:p@a:4222,[::1]:4223?x=1") == (
        ("tls://u:p@a:4222", "tls://[::1]:4223"),
        "x=1",
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("nats://a:4222,tls://b:4222", "server 2 has scheme 'tls'"),
        ("nats://a:4222,,c:4222", "server 2 ('') is empty"),
        ("nats://a:4222,b:port", "server 2 ('b:port'): the port must be a number"),
        ("nats://a:99999", "server 1 ('a:99999'): the port must be a number"),
        ("nats://a:4222/streams", "server 1 ('a:4222/streams') is not host:port"),
        ("nats://a:4222, b:4222", "server 2 (' b:4222') is not host:port"),
        ("nats://u:secret@:4222", "server 1 (':4222') names no host"),
        ("nats:/a:4222", "unsupported bus URL scheme (none)"),
        ("kafka://a:9092", "unsupported bus URL scheme 'kafka'"),
    ],
)
def test_a_host_list_that_cannot_be_read_is_refused_naming_the_server(
    url: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as raised:
        BusSettings.from_url(url)
    assert "secret" not in str(raised.value)


def test_several_postgresql_hosts_with_or_without_each_scheme_are_one_conninfo() -> None:
    one = parse_store_url("postgresql://ann:secret@a:5432,b:5433/w")
    assert parse_store_url("postgresql://ann:secret@a:5432,postgresql://b:5433/w") == one
    assert parse_store_url("postgres://ann:secret@a:5432,postgres://b:5433/w") == one
    assert one.target == "postgresql://ann:secret@a:5432,b:5433/w"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://a:5432,,b/w", "an empty host"),
        ("postgresql://a:x/w", "port 'x' is not 1 to 65535"),
        ("postgresql://a:5432,sqlite:///w.db", "a scheme in the middle"),
    ],
)
def test_a_postgresql_host_list_that_cannot_be_read_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_store_url(url)


# -- the commands -----------------------------------------------------------------------------


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of the test's own, with no ``WAYMARK_*`` of the caller's."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WAYMARK_"):
            monkeypatch.delenv(name)
    return tmp_path


COMMANDS = {
    "serve": ["serve"],
    "collect": ["collect"],
    "migrate": ["migrate"],
}
STORE = "sqlite:///w.db"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"WAYMARK_STOER": STORE}, "unknown setting WAYMARK_STOER"),
        ({"WAYMARK_STORE": STORE, "WAYMARK_BUS": "nats://a:4222,,b"}, "server 2 ('') is empty"),
        ({"WAYMARK_STORE": STORE, "WAYMARK_BUS": "nats://a:4222,tls://b"}, "scheme 'tls'"),
        ({"WAYMARK_STORE": "postgresql://a:5432,,b/w"}, "an empty host"),
        ({"WAYMARK_STORE": "sqlite://w.db"}, "expected three slashes"),
    ],
)
def test_configuration_that_cannot_be_right_stops_the_start(
    in_tmp: Path, command: str, env: dict[str, str], problem: str
) -> None:
    if command == "collect":
        env = {"WAYMARK_BUS": "nats://127.0.0.1:4222", **env}
    result = CliRunner().invoke(app, COMMANDS[command], env=env)
    assert result.exit_code == 1, result.output
    assert problem in result.output
    assert list(in_tmp.iterdir()) == []  # nothing was created


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"WAYMARK_BODY_TIMEOUT": "soon"}, "WAYMARK_BODY_TIMEOUT='soon' is not a float"),
        ({"WAYMARK_HEADER_TIMEOUT": "0"}, "WAYMARK_HEADER_TIMEOUT must be a positive number"),
        ({"WAYMARK_MAX_CONNECTIONS": "1.5"}, "WAYMARK_MAX_CONNECTIONS='1.5' is not a int"),
        ({"WAYMARK_KEEP_ALIVE": "nan"}, "WAYMARK_KEEP_ALIVE must be a positive number"),
    ],
)
def test_a_client_limit_that_is_not_a_positive_number_stops_serve(
    in_tmp: Path, env: dict[str, str], problem: str
) -> None:
    result = CliRunner().invoke(app, ["serve", "--store", STORE], env=env)
    assert result.exit_code == 1, result.output
    assert problem in result.output
    assert list(in_tmp.iterdir()) == []


def test_the_flags_of_the_limits_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WAYMARK_BODY_TIMEOUT", "3")
    monkeypatch.setenv("WAYMARK_MAX_CONNECTIONS", "7")
    limits = ClientLimits.resolve(body_timeout_s=4)
    assert (limits.body_timeout_s, limits.max_connections) == (4, 7)
    with pytest.raises(ValueError, match="the flag of WAYMARK_KEEP_ALIVE"):
        ClientLimits.resolve(keep_alive_s=-1)


def test_only_waymark_variables_outside_the_registry_are_unknown() -> None:
    env = {name: "" for name in KNOWN} | {"WAYMARK_STOER": "", "PATH": "", "waymark_x": ""}
    assert unknown_settings(env) == ["WAYMARK_STOER"]
