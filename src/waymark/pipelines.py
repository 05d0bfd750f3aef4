"""Pipelines: per tenant and domain, which events finish a trace, when a trace stalls,
and how long a trace is kept after its last event (``retention_days``).

A GSM journey carries no ``trace_status``; it becomes done when an event at a
*final stage* reports a terminal status (SUCCESS, FAILED, SKIPPED,
PARTIAL_SUCCESS). A pipeline may also say that a FAILED at any stage finishes the
trace, and after how long without news a trace that is not done is STALLED.

The verdict is taken once, when an event is accepted, and stored with it
(``Record.finishing``), so a summary stays a pure function of stored events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from waymark.model import TERMINAL_STATUSES, Event, Status, TraceStatus

DEFAULT_FINAL_STAGES = frozenset({"WORKFLOW"})
DEFAULT_STALL_TIMEOUT_S = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class Pipeline:
    final_stages: frozenset[str] = DEFAULT_FINAL_STAGES
    failed_finishes: bool = False
    stall_timeout_s: float | None = DEFAULT_STALL_TIMEOUT_S
    retention_days: float | None = None  # None: kept for ever

    @property
    def stall_timeout_us(self) -> int | None:
        return None if self.stall_timeout_s is None else int(self.stall_timeout_s * 1_000_000)

    def finishes(self, event: Event) -> bool:
        given = event.__dict__  # a model's attributes pass through its __getattr__ hook
        if given["trace_status"] is TraceStatus.FINISHED:
            return True
        stage = given["stage"]
        if stage is not None and stage in self.final_stages:
            return given["status"] in TERMINAL_STATUSES
        return self.failed_finishes and given["status"] is Status.FAILED


@dataclass(frozen=True, slots=True)
class Pipelines:
    """All pipelines, looked up by (tenant, domain); ``None`` in a key is a wildcard."""

    rules: Mapping[tuple[str | None, str | None], Pipeline] = field(default_factory=dict)
    default: Pipeline = Pipeline()

    def lookup(self, tenant: str, domain: str | None) -> Pipeline:
        for key in ((tenant, domain), (tenant, None), (None, domain), (None, None)):
            found = self.rules.get(key)
            if found is not None:
                return found
        return self.default

    def finishes(self, tenant: str, event: Event) -> bool:
        if not self.rules:  # no pipelines configured: skip the four lookups (every event)
            return self.default.finishes(event)
        return self.lookup(tenant, event.domain).finishes(event)

    def stall_timeouts(self, tenant: str) -> tuple[int | None, dict[str, int | None]]:
        """The tenant's default stall timeout (µs) and the per-domain ones that differ."""
        base = self.lookup(tenant, None).stall_timeout_us
        per_domain: dict[str, int | None] = {}
        for rule_tenant, domain in self.rules:
            if domain is not None and rule_tenant in (tenant, None):
                timeout = self.lookup(tenant, domain).stall_timeout_us
                if timeout != base:
                    per_domain[domain] = timeout
        return base, per_domain

    def keeps_some_for_a_time(self) -> bool:
        """Whether any pipeline has a ``retention_days``."""
        return any(p.retention_days is not None for p in (self.default, *self.rules.values()))

    def retentions(self, tenant: str) -> tuple[float | None, dict[str, float | None]]:
        """The tenant's default retention (days) and the per-domain ones that differ."""
        base = self.lookup(tenant, None).retention_days
        per_domain: dict[str, float | None] = {}
        for rule_tenant, domain in self.rules:
            if domain is not None and rule_tenant in (tenant, None):
                days = self.lookup(tenant, domain).retention_days
                if days != base:
                    per_domain[domain] = days
        return base, per_domain


def _pipeline(table: dict[str, object], where: str, base: Pipeline) -> Pipeline:
    unknown = set(table) - {
        "tenant",
        "domain",
        "final_stages",
        "failed_finishes",
        "stall_timeout_s",
        "retention_days",
    }
    if unknown:
        raise ValueError(f"{where}: unknown setting(s) {', '.join(sorted(unknown))}")
    stages = table.get("final_stages", sorted(base.final_stages))
    if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
        raise ValueError(f"{where}.final_stages: must be a list of stage names")
    failed = table.get("failed_finishes", base.failed_finishes)
    if not isinstance(failed, bool):
        raise ValueError(f"{where}.failed_finishes: must be true or false")
    stall = table.get("stall_timeout_s", base.stall_timeout_s)
    if stall is not None and (isinstance(stall, bool) or not isinstance(stall, int | float)):
        raise ValueError(f"{where}.stall_timeout_s: must be a number of seconds")
    if isinstance(stall, int | float) and stall <= 0:
        stall = None  # 0 or less: never stalls
    keep = table.get("retention_days", base.retention_days)
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int | float)):
        raise ValueError(f"{where}.retention_days: must be a number of days")
    if isinstance(keep, int | float) and keep <= 0:
        keep = None  # 0 or less: kept for ever
    return Pipeline(
        frozenset(stages),
        failed,
        None if stall is None else float(stall),
        None if keep is None else float(keep),
    )


def load(path: str) -> Pipelines:
    """Read a pipelines file (TOML)::

        [default]                      # every tenant and domain without a rule of its own
        final_stages = ["WORKFLOW"]
        failed_finishes = false
        stall_timeout_s = 86400        # 0: never STALLED
        retention_days = 90            # traces go 90 days after their last event; 0: kept

        [[pipeline]]                   # tenant and domain are optional; absent = any
        tenant = "opendes"
        domain = "dataset"
        final_stages = ["INDEX"]
        failed_finishes = true
        stall_timeout_s = 3600
        retention_days = 30

    Settings a rule leaves out come from ``[default]``.
    """
    import tomllib

    with open(path, "rb") as handle:
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from exc
    unknown = set(data) - {"default", "pipeline"}
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}")
    default = _pipeline(data.get("default", {}), f"{path}: default", Pipeline())
    rules: dict[tuple[str | None, str | None], Pipeline] = {}
    for i, table in enumerate(data.get("pipeline", [])):
        where = f"{path}: pipeline[{i}]"
        tenant, domain = table.get("tenant"), table.get("domain")
        for name, value in (("tenant", tenant), ("domain", domain)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}.{name}: must be a string")
        rules[(tenant, domain)] = _pipeline(table, where, default)
    return Pipelines(rules, default)
