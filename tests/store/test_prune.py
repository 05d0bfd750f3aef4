"""``waymark prune`` and :mod:`waymark.retention` on both stores: what is old goes, in
small batches, with everything derived from it; what is new, or of another tenant, stays."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.store.conftest import rec
from waymark import retention
from waymark.cli import app
from waymark.model import now_us
from waymark.pipelines import Pipelines, load
from waymark.store.base import StaleTrace
from waymark.store.sql import SqlStore

DAY_US = 86_400 * 1_000_000


def _fill(store: SqlStore) -> int:
    """40 day-old traces of 3 events (with paths) in tenant a, one in b, and 2 fresh ones."""
    old = now_us() - 40 * DAY_US
    store.append(
        [
            rec(f"old{n}", f"old{n}-{i}", tenant="a", at=old + n, path=f"raw/{n}")
            for n in range(40)
            for i in range(3)
        ]
        + [rec("old-b", "b1", tenant="b", at=old)]
        + [rec(f"new{n}", f"new{n}", tenant="a", at=now_us(), path="raw/1") for n in range(2)]
    )
    return old


def test_prune_deletes_what_is_older_than_the_age_given(store_url: str, store: SqlStore) -> None:
    _fill(store)
    runner = CliRunner()
    dry = runner.invoke(app, ["prune", "--older-than", "30d", "--dry-run", "--store", store_url])
    assert dry.exit_code == 0, dry.output
    assert "a: would delete 40 traces (120 events)" in dry.output
    assert "b: would delete 1 traces (1 events)" in dry.output
    assert store.summary("a", "old0") is not None  # a dry run deletes nothing

    only_a = ["prune", "--older-than", "30d", "--tenant", "a", "--store", store_url]
    done = runner.invoke(app, only_a)
    assert done.exit_code == 0, done.output
    assert "a: deleted 40 traces (120 events)" in done.output
    assert "b:" not in done.output
    assert all(store.summary("a", f"old{n}") is None for n in range(40))
    assert store.events("a", "old7").items == []
    assert {h.trace_id for h in store.paths("a", "raw/1")} == {"new0", "new1"}
    assert store.summary("a", "new0") is not None
    assert store.summary("b", "old-b") is not None

    rest = runner.invoke(app, ["prune", "--older-than", "30d", "--store", store_url])
    assert "b: deleted 1 traces (1 events)" in rest.output
    assert "a: deleted 0 traces (0 events)" in rest.output
    assert store.summary("b", "old-b") is None


def test_prune_works_in_small_transactions(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(store)
    monkeypatch.setattr(retention, "BATCH_EVENTS", 10)
    done = list(retention.prune(store, now_us() - 30 * DAY_US, tenant="a"))
    assert [d.traces for d in done] == [3] * 13 + [1]  # 3 traces of 3 events fit in 10
    assert sum(d.events for d in done) == 120


def test_an_age_must_be_a_number_and_a_unit() -> None:
    assert retention.parse_age("30d") == 30 * DAY_US
    assert retention.parse_age("90m") == 90 * 60 * 1_000_000
    for bad in ("30", "d", "-1d", "0h", "3w"):
        with pytest.raises(ValueError, match="not an age"):
            retention.parse_age(bad)
    result = CliRunner().invoke(app, ["prune", "--older-than", "soon", "--store", "sqlite:///x"])
    assert result.exit_code == 2 and "--older-than" in result.output


def test_a_large_trace_is_a_batch_of_its_own() -> None:
    def trace(n: int, events: int) -> StaleTrace:
        return StaleTrace("a", f"t{n}", None, n, events)

    stale = [trace(1, 10), trace(2, 9000), trace(3, 10), trace(4, 10)]
    groups = list(retention.batches(stale, 100))
    assert [[t.trace_id for t in g] for g in groups] == [["t1"], ["t2"], ["t3", "t4"]]
    few = [trace(n, 1) for n in range(5)]
    assert [len(g) for g in retention.batches(few, 2)] == [2, 2, 1]


def _pipelines(tmp_path: Path, text: str) -> Pipelines:
    path = tmp_path / "pipelines.toml"
    path.write_text(text)
    return load(str(path))


def test_each_trace_is_kept_for_its_pipelines_retention(store: SqlStore, tmp_path: Path) -> None:
    rules = _pipelines(
        tmp_path,
        "[default]\nretention_days = 30\n"
        '[[pipeline]]\ndomain = "audit"\nretention_days = 0\n'
        '[[pipeline]]\ntenant = "a"\ndomain = "scratch"\nretention_days = 1\n',
    )
    now = now_us()
    store.append(
        [
            rec("old", "e1", tenant="a", at=now - 40 * DAY_US),
            rec("recent", "e2", tenant="a", at=now - 10 * DAY_US),
            rec("audit", "e3", tenant="a", at=now - 400 * DAY_US, domain="audit"),
            rec("scratch", "e4", tenant="a", at=now - 2 * DAY_US, domain="scratch"),
            rec("scratch", "e5", tenant="b", at=now - 2 * DAY_US, domain="scratch"),
        ]
    )
    done = list(retention.expire(store, rules, now))
    assert sum(d.traces for d in done) == 2
    assert store.summary("a", "old") is None and store.summary("a", "scratch") is None
    for tenant, trace in (("a", "recent"), ("a", "audit"), ("b", "scratch")):
        assert store.summary(tenant, trace) is not None, (tenant, trace)


def test_one_replica_at_a_time_prunes(store: SqlStore, tmp_path: Path) -> None:
    rules = _pipelines(tmp_path, "[default]\nretention_days = 30\n")
    store.append([rec("old", "e1", at=now_us() - 40 * DAY_US)])
    first, second = (retention.Pruner(store, rules, 60) for _ in range(2))
    assert first.round() == 1
    assert second.round() == -1  # the first holds the lease for two intervals
    assert first.round() == 0
    assert (first.rounds, second.rounds) == (2, 0)


def test_retention_days_must_be_a_number(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"default.retention_days: must be a number of days"):
        _pipelines(tmp_path, '[default]\nretention_days = "30d"\n')
    assert not _pipelines(tmp_path, "[default]\nretention_days = 0\n").keeps_some_for_a_time()
