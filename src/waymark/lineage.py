"""A trace's lineage as a graph whose size grows with what producers sent: steps and paths
are nodes, and every input and output is one edge (input path -> step -> output path).

An event becomes a *step* node when it names inputs or outputs (``inputs``, ``outputs``,
okdata's ``body.files_incoming``/``files_outgoing``); a step that only read (a failed one,
say) is a node too. Each path it read is an edge from the path to the step, each path it
wrote one from the step to the path: 3 events with 1,000 inputs and 1,000 outputs each
make 3 step nodes, at most 6,000 path nodes and 6,000 edges, never their product.

A page holds at most ``limit`` nodes and ``limit`` edges (:data:`MAX_LIMIT` at most) and
about :data:`PAGE_BYTES` of them; every edge on a page has both its nodes on that page, so
a path or a step cut across pages appears on each (node ids are stable: merge by id).
Steps come in the events' sort-key order; ``next`` is the cursor of the next page, None
on the last. Models here are pure (no server module), so the SDK reads answers with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from waymark.model import Current, inputs_of, outputs_of

DEFAULT_LIMIT = 1000
"""Nodes (and edges) on a page when ``?limit`` is not given."""

MAX_LIMIT = 5000
"""The most nodes, and the most edges, one page may hold (``?limit`` up to this)."""

PAGE_BYTES = 1024 * 1024
"""About how many bytes of nodes and edges a page holds at most, whatever ``limit`` says
(paths may be 10,000 characters long)."""


class StepNode(Current):
    """An event that read or wrote something (who it was, as a summary's ``current``)."""

    id: str
    kind: Literal["step"] = "step"


class PathNode(BaseModel):
    """A path (file, object, table URI) a step read or wrote."""

    id: str
    kind: Literal["path"] = "path"
    path: str


class Edge(BaseModel):
    """path -> step: the step read the path; step -> path: the step wrote it."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str


Node = Annotated[StepNode | PathNode, Field(discriminator="kind")]


class Lineage(BaseModel):
    """One page of a trace's lineage (``GET /v1/traces/{trace_id}/lineage``)."""

    trace_id: str
    nodes: list[Node]
    edges: list[Edge]
    truncated: bool = Field(description="true when the graph goes on: ask for `next`")
    next: str | None = Field(description="the cursor of the next page; null on the last")


def step_id(event_id: str) -> str:
    return "step:" + event_id


def path_id(path: str) -> str:
    return "path:" + path


def links(doc: dict[str, Any]) -> list[tuple[bool, str]]:
    """An event's edges, as (read?, path): its inputs, then its outputs, each once."""
    read = [(True, p) for p in dict.fromkeys(inputs_of(doc))]
    return read + [(False, p) for p in dict.fromkeys(outputs_of(doc))]


class Graph:
    """One page of lineage being built, step after step (:meth:`add`)."""

    def __init__(self, limit: int, page_bytes: int = PAGE_BYTES) -> None:
        self.limit = limit
        self.room = page_bytes
        self.nodes: list[dict[str, Any]] = []
        self.edges: list[dict[str, str]] = []
        self._ids: set[str] = set()

    def _node(self, node: dict[str, Any]) -> None:
        self._ids.add(node["id"])
        self.nodes.append(node)

    def add(self, doc: dict[str, Any], start: int = 0) -> int | None:
        """Add the event's step with its links from the ``start``-th on (:func:`links`).
        Return the index of the first link that did not fit, None if all did (or the
        event has none). Nothing of a step is added unless at least one of its links is;
        the first link of a page always fits, so that paging moves on."""
        todo: Sequence[tuple[bool, str]] = links(doc)[start:]
        if not todo:
            return None
        step = step_id(doc["event_id"])
        for n, (read, path) in enumerate(todo):
            node = path_id(path)
            new = [i for i in dict.fromkeys((step, node)) if i not in self._ids]
            size = len(node) + len(step) + 20  # the edge, as JSON text, about
            if node in new:
                size += 2 * len(node) + 30
            if step in new:
                size += _step_size(step, doc)
            if self.edges and (
                len(self.edges) >= self.limit
                or len(self.nodes) + len(new) > self.limit
                or size > self.room
            ):
                return start + n
            if step in new:
                self._node(_step(step, doc))
            if node in new:
                self._node({"id": node, "kind": "path", "path": path})
            self.edges.append({"from": node, "to": step} if read else {"from": step, "to": node})
            self.room -= size
        return None


def _step_size(node_id: str, doc: dict[str, Any]) -> int:
    named = (doc.get(k) for k in ("component", "stage", "operation"))
    return 2 * len(node_id) + sum(len(n) for n in named if isinstance(n, str)) + 150


def _step(node_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": node_id,
        "kind": "step",
        "event_id": doc["event_id"],
        "component": doc.get("component"),
        "stage": doc.get("stage"),
        "operation": doc.get("operation"),
        "status": doc["status"],
        "time": doc["time"],
    }
