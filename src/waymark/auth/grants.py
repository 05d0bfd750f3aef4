"""What a credential may do: roles per tenant, optionally limited to datasets.

A grant is written ``TENANT:ROLE`` or ``TENANT:ROLE:DATASET`` (the form of an OpenID
Connect roles claim's values and of ``waymark keys create``); ``*`` as the tenant means
every tenant. ``admin`` holds what ``reader`` and ``writer`` hold; ``writer`` does not
imply ``reader``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

ANY_TENANT = "*"


class Role(StrEnum):
    READER = "reader"  # every GET, the status and processor queries
    WRITER = "writer"  # everything that submits events or creates traces
    ADMIN = "admin"  # both, plus keys, dead letters and administration
    METRICS = "metrics"  # GET /metrics only (which a reader or admin of any tenant may read)


@dataclass(frozen=True, slots=True)
class Grant:
    tenant: str
    role: Role
    dataset: str | None = None  # None: every dataset of the tenant

    def __str__(self) -> str:
        text = f"{self.tenant}:{self.role}"
        return text if self.dataset is None else f"{text}:{self.dataset}"

    def gives(self, tenant: str, role: Role) -> bool:
        """Whether this grant gives ``role`` in ``tenant`` (for some or all datasets)."""
        if self.tenant not in (ANY_TENANT, tenant):
            return False
        return self.holds(role)

    def holds(self, role: Role) -> bool:
        """Whether this grant's role includes ``role``: admin includes every role; the
        metrics are read by a reader too."""
        if self.role is role or self.role is Role.ADMIN:
            return True
        return role is Role.METRICS and self.role is Role.READER


def parse_grant(text: str) -> Grant:
    """``TENANT:ROLE[:DATASET]`` as a :class:`Grant`; ValueError naming what is wrong."""
    parts = text.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"{text!r} is not TENANT:ROLE or TENANT:ROLE:DATASET")
    tenant, role_name = parts[0], parts[1]
    try:
        role = Role(role_name)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise ValueError(f"{text!r} names the role {role_name!r}; roles are {roles}") from None
    dataset = parts[2] if len(parts) == 3 else None
    if dataset == "":
        raise ValueError(f"{text!r} has an empty dataset")
    return Grant(tenant, role, dataset)


def parse_grants(values: Iterable[str]) -> tuple[frozenset[Grant], list[str]]:
    """The grants among ``values`` and the values that are not grants (a token's roles
    claim may hold roles meant for other applications; those are ignored, not refused)."""
    grants: set[Grant] = set()
    ignored: list[str] = []
    for value in values:
        try:
            grants.add(parse_grant(value))
        except ValueError:
            ignored.append(value)
    return frozenset(grants), ignored


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: ``name`` is what events record as ``submitted_by`` (a
    key's name, a token's ``azp``/``client_id``/``sub``)."""

    name: str
    grants: frozenset[Grant]

    def allows(self, tenant: str, role: Role) -> bool:
        return any(grant.gives(tenant, role) for grant in self.grants)

    def holds_anywhere(self, role: Role) -> bool:
        """Whether some grant, in whatever tenant, includes ``role``."""
        return any(grant.holds(role) for grant in self.grants)

    def datasets(self, tenant: str, role: Role) -> frozenset[str] | None:
        """The datasets ``role`` in ``tenant`` is limited to, or None for all of them
        (also when the principal lacks the role: check :meth:`allows` first)."""
        limited: set[str] = set()
        for grant in self.grants:
            if grant.gives(tenant, role):
                if grant.dataset is None:
                    return None
                limited.add(grant.dataset)
        return frozenset(limited)

    def only_tenant(self) -> str | None:
        """The tenant of a principal whose grants name exactly one tenant (not ``*``),
        which may then leave the tenant header out; else None."""
        tenants = {grant.tenant for grant in self.grants}
        if len(tenants) == 1 and ANY_TENANT not in tenants:
            return next(iter(tenants))
        return None


class Authenticator(Protocol):
    """One way in (API keys, OpenID Connect). ``authenticate`` returns the principal of a
    bearer credential it recognises, None for one it does not (another authenticator may),
    and raises :class:`~waymark.errors.Unauthenticated` for one it recognises as its own
    but refuses (expired, revoked, bad signature)."""

    async def authenticate(self, credential: str) -> Principal | None: ...
