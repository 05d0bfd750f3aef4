"""Store URLs are read in one place; a bad one is refused with what is wrong with it, and
never with its password."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from waymark.cli import app
from waymark.store import open_store, parse_store_url


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///./waymark.db", "./waymark.db"),
        ("sqlite:///data/w.db", "data/w.db"),
        ("sqlite:////tmp/w.db", "/tmp/w.db"),
    ],
)
def test_sqlite_urls_name_a_file(url: str, path: str) -> None:
    parsed = parse_store_url(url)
    assert (parsed.kind, parsed.target, parsed.shown) == ("sqlite", path, path)
    assert parsed.sqlalchemy_url == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ann:secret@db.example:6543/waymark?options=-csearch_path%3Dw",
        "postgres://ann:secret@db.example:6543/waymark?options=-csearch_path%3Dw",
        "postgresql+psycopg://ann:secret@db.example:6543/waymark?options=-csearch_path%3Dw",
    ],
)
def test_postgresql_urls_in_each_spelling_are_one_conninfo(url: str) -> None:
    parsed = parse_store_url(url)
    assert parsed.kind == "postgresql"
    assert parsed.target == (
        "postgresql://ann:secret@db.example:6543/waymark?options=-csearch_path%3Dw"
    )
    assert parsed.shown == "PostgreSQL waymark@db.example:6543"
    assert parsed.sqlalchemy_url.startswith("postgresql+psycopg://ann:secret@db.example:6543/")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "the store URL is empty"),
        ("sqlite:///", "needs a file"),
        ("sqlite:///:memory:", "needs a file"),
        ("sqlite://w.db", "expected three slashes"),
        ("sqlite:///w.db?mode=ro", "take no options"),
        ("postgresql:ann@db/waymark", "not a PostgreSQL URL"),
        ("postgresql://ann:secret@db/waymark?bogus_option=1", "not a valid PostgreSQL URL"),
        ("mysql://ann:secret@db/waymark", "unsupported store URL scheme 'mysql'"),
        ("./waymark.db", "unsupported store URL scheme '(no scheme)'"),
    ],
)
def test_a_bad_url_is_refused_with_its_problem_and_without_its_password(
    url: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)) as raised:
        parse_store_url(url)
    assert "secret" not in str(raised.value)
    with pytest.raises(ValueError, match=re.escape(problem)) as again:
        open_store(url)
    assert str(again.value) == str(raised.value)


@pytest.mark.parametrize("command", ["migrate", "serve", "dead-letters", "collect"])
def test_every_command_that_reads_a_store_url_names_its_problem(command: str) -> None:
    bus = ["--bus", "nats://127.0.0.1:4222"] if command == "collect" else []
    result = CliRunner().invoke(app, [command, "--store", "sqlite://w.db", *bus])
    assert result.exit_code == 1
    assert "expected three slashes" in result.output
