// Small helpers every part of the page uses: building elements from text, and readable
// times and durations. Everything producers sent is put in the page as text
// (textContent, createTextNode), never as markup.

export const $ = (id) => document.getElementById(id);

/** An element with attributes and children; strings become text nodes, never markup. */
export function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value == null || value === false) continue;
    if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

/** An SVG element; numbers and strings as attributes, text children as text. */
export function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value != null) node.setAttribute(name, String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function stateBadge(state) {
  return el("span", { className: "state " + state }, state);
}

export function statusBadge(status) {
  return el("span", { className: "status " + status }, status);
}

/** "component / stage / operation", leaving out what the event did not say. */
export function stepName(event) {
  const parts = [event.component, event.stage, event.operation].filter(Boolean);
  return parts.length ? parts.join(" / ") : "(unnamed step)";
}

/** A duration in words: "250 ms", "41 s", "3 min", "2 h 5 min", "3 d 4 h". */
export function duration(ms) {
  if (ms == null || !Number.isFinite(ms)) return "";
  ms = Math.max(0, ms);
  if (ms < 1000) return Math.round(ms) + " ms";
  const s = ms / 1000;
  if (s < 59.5) return Math.round(s) + " s";
  const min = s / 60;
  if (min < 59.5) return Math.round(min) + " min";
  const h = Math.floor(min / 60);
  if (h < 24) {
    const rest = Math.round(min - h * 60);
    return rest ? h + " h " + rest + " min" : h + " h";
  }
  const d = Math.floor(h / 24);
  return h - d * 24 ? d + " d " + (h - d * 24) + " h" : d + " d";
}

/** "3 min ago" (or "in 3 min" for a time ahead of this browser's clock). */
export function relative(iso, now) {
  const ms = (now ?? Date.now()) - Date.parse(iso);
  if (Math.abs(ms) < 1000) return "just now";
  return ms >= 0 ? duration(ms) + " ago" : "in " + duration(-ms);
}

/** The exact time, in UTC and in this browser's zone, for a tooltip. */
export function exact(iso) {
  const when = new Date(iso);
  return iso + " (" + when.toLocaleString() + " here)";
}

/** A <time> that reads "3 min ago" and shows the exact time on hover. */
export function timeEl(iso, now) {
  if (!iso) return "";
  return el("time", { datetime: iso, title: exact(iso) }, relative(iso, now));
}
