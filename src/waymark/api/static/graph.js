// The lineage graph: steps and files as nodes, edges in the direction data moved (file ->
// the step that read it -> the file it wrote), laid out in layers by dagre
// (vendored: dagre.min.js, MIT, see dagre.LICENSE.txt) and drawn as SVG at a readable size
// in a box that scrolls.

import { el, stepName, svg } from "./util.js";

const CHAR_PX = 7; // the width of a character of the node font (12px monospace)
const MAX_CHARS = 34; // longer labels are cut in the middle; the whole is in the tooltip

/** A growing graph: pages of the lineage answer merged into one set of nodes and edges. */
export class Lineage {
  constructor() {
    this.nodes = new Map();
    this.edges = new Map();
    this.truncated = false;
    this.next = null;
  }

  /** Add one page of GET /v1/traces/{id}/lineage: its nodes and edges merged by id. */
  add(page) {
    for (const node of page.nodes) this.nodes.set(node.id, node);
    for (const edge of page.edges) this.edges.set(edge.from + "\n" + edge.to, edge);
    this.truncated = Boolean(page.truncated);
    this.next = page.next ?? null;
  }

  counts() {
    let steps = 0;
    for (const node of this.nodes.values()) if (node.kind === "step") steps += 1;
    return { steps, files: this.nodes.size - steps, edges: this.edges.size };
  }
}

function cut(text) {
  if (text.length <= MAX_CHARS) return text;
  const half = Math.floor((MAX_CHARS - 1) / 2);
  return text.slice(0, half) + "…" + text.slice(text.length - half);
}

function labelOf(node) {
  if (node.kind === "step") {
    return { text: cut(stepName(node)), full: stepName(node) + " (" + (node.status || "") + ")" };
  }
  // The file and its folder: files of one name in several folders stay apart.
  const path = node.path ?? node.id;
  const parts = path.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").split("/").filter(Boolean);
  return { text: cut(parts.slice(-2).join("/") || path), full: path };
}

/** Draw the graph into ``box`` (replacing what was there). */
export function drawGraph(box, lineage) {
  box.replaceChildren();
  if (!lineage.nodes.size) {
    box.append(el("p", { className: "quiet" }, "No inputs or outputs reported."));
    return;
  }
  const g = new dagre.graphlib.Graph();
  // Left to right where there is room; top to bottom on a narrow screen, which scrolls down.
  const rankdir = box.clientWidth && box.clientWidth < 600 ? "TB" : "LR";
  g.setGraph({ rankdir, nodesep: 10, ranksep: rankdir === "LR" ? 70 : 40, edgesep: 6, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of lineage.nodes.values()) {
    const label = labelOf(node);
    g.setNode(node.id, { width: label.text.length * CHAR_PX + 20, height: 26, node, label });
  }
  for (const edge of lineage.edges.values()) {
    if (g.hasNode(edge.from) && g.hasNode(edge.to)) g.setEdge(edge.from, edge.to);
  }
  dagre.layout(g);
  const { width, height } = g.graph();
  const picture = svg(
    "svg",
    { width: Math.ceil(width), height: Math.ceil(height), class: "lineage", role: "img" },
    svg("title", {}, "data flow"),
    svg(
      "defs",
      {},
      svg(
        "marker",
        { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
        svg("path", { d: "M0,0 L10,5 L0,10 z", class: "arrowhead" }),
      ),
    ),
  );
  for (const e of g.edges()) {
    const points = g.edge(e).points;
    const d = points.map((p, i) => (i ? "L" : "M") + p.x.toFixed(1) + "," + p.y.toFixed(1)).join(" ");
    picture.append(
      svg("path", { d, class: "edge", "marker-end": "url(#arrow)", "data-from": e.v, "data-to": e.w }),
    );
  }
  for (const id of g.nodes()) {
    const { x, y, width: w, height: h, node, label } = g.node(id);
    const kind = node.kind === "step" ? "step " + (node.status || "") : "file";
    picture.append(
      svg(
        "g",
        { class: "node " + kind, "data-id": id, transform: `translate(${(x - w / 2).toFixed(1)},${(y - h / 2).toFixed(1)})` },
        svg("title", {}, label.full),
        svg("rect", { width: w, height: h, rx: node.kind === "step" ? 3 : 13 }),
        svg("text", { x: w / 2, y: h / 2 + 4, "text-anchor": "middle" }, label.text),
      ),
    );
  }
  box.append(picture);
}
