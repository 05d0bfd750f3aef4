// Waymark's page: searches traces and shows one as it goes, through the /v1 API only.
// Everything shown comes from producers, so it is put in the page as text
// (textContent), never as markup.
"use strict";

const $ = (id) => document.getElementById(id);
let cursor = null; // the search's next page
let watching = null; // the trace being shown, while its long poll runs

function tenant() {
  return $("tenant").value.trim() || "default";
}

async function api(path) {
  const response = await fetch(path, { headers: { "Waymark-Tenant": tenant() } });
  if (response.status === 404) return null;
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function stateBadge(state) {
  const span = document.createElement("span");
  span.className = "state " + state;
  span.textContent = state;
  return span;
}

function traceLink(traceId) {
  const a = document.createElement("a");
  a.href = "#trace=" + encodeURIComponent(traceId);
  a.textContent = traceId;
  return a;
}

function say(text, isError) {
  $("message").textContent = text || "";
  $("message").className = isError ? "error" : "";
}

function errorText(error) {
  const message = error && error.message;
  if (message && typeof message === "object") return message.en || Object.values(message)[0] || "";
  return typeof error === "string" ? error : JSON.stringify(error);
}

function step(current) {
  return [current.component, current.stage, current.operation].filter(Boolean).join(" / ");
}

function addTraceRow(summary) {
  const row = $("traces").tBodies[0].insertRow();
  cell(row, "", "id").appendChild(traceLink(summary.trace_id));
  cell(row, "").appendChild(stateBadge(summary.state));
  cell(row, step(summary.current));
  cell(row, summary.domain_id);
  cell(row, summary.event_count);
  cell(row, summary.updated_at);
}

async function search(more) {
  const params = new URLSearchParams({ limit: "50" });
  for (const name of ["state", "domain_id", "component"]) {
    const value = $(name).value.trim();
    if (value) params.set(name, value);
  }
  if (more && cursor) params.set("cursor", cursor);
  if (!more) $("traces").tBodies[0].replaceChildren();
  try {
    const page = await api("/v1/traces?" + params);
    page.items.forEach(addTraceRow);
    cursor = page.next_cursor;
    $("more").hidden = !cursor;
    say(page.items.length || more ? "" : "No traces match.");
  } catch (error) {
    say(error.message, true);
  }
}

async function findPath(path) {
  $("traces").tBodies[0].replaceChildren();
  $("more").hidden = true;
  try {
    const found = await api("/v1/paths?" + new URLSearchParams({ path }));
    const ids = [...new Set(found.items.map((hit) => hit.trace_id))];
    const summaries = await Promise.all(ids.map((id) => api(traceUrl(id))));
    summaries.filter(Boolean).forEach(addTraceRow);
    say(ids.length ? "" : "No trace touched " + path + ".");
  } catch (error) {
    say(error.message, true);
  }
}

function traceUrl(traceId, suffix) {
  return "/v1/traces/" + encodeURIComponent(traceId) + (suffix || "");
}

function showSummary(summary) {
  const fields = [
    ["state", summary.state],
    ["done", summary.done ? "yes" : "no"],
    ["trace status", summary.trace_status],
    ["event status", summary.trace_event_status],
    ["outcome", summary.outcome],
    ["deciding step", step(summary.current) + " (" + summary.current.status + ")"],
    ["dataset", summary.domain_id],
    ["user", summary.user],
    ["started", summary.started_at],
    ["updated", summary.updated_at],
    ["finished", summary.finished_at],
    ["duration", summary.duration_ms == null ? null : summary.duration_ms + " ms"],
    ["events", summary.event_count],
    ["files", listed(summary.paths, summary.last_paths, summary.path_count).join(", ")],
  ];
  const dl = $("summary");
  dl.replaceChildren();
  for (const [name, value] of fields) {
    if (value == null || value === "") continue;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    if (name === "state") dd.appendChild(stateBadge(value));
    else dd.textContent = String(value);
    dl.append(dt, dd);
  }
  const errors = $("errors");
  errors.replaceChildren();
  for (const error of listed(summary.errors, summary.last_errors, summary.error_count)) {
    const li = document.createElement("li");
    li.className = "error";
    li.textContent = errorText(error);
    errors.appendChild(li);
  }
  if (!summary.error_count) errors.textContent = "none";
}

// A summary's list: its first items, how many are left out, its last items.
function listed(first, last, count) {
  const left = count - first.length - last.length;
  return [...first, ...(left ? ["… " + left + " more …"] : []), ...last];
}

async function showEvents(traceId) {
  const body = $("events").tBodies[0];
  body.replaceChildren();
  let next = null;
  do {
    const params = new URLSearchParams({ limit: "500" });
    if (next) params.set("cursor", next);
    const page = await api(traceUrl(traceId, "/events?" + params));
    if (!page) return;
    for (const event of page.items) {
      const row = body.insertRow();
      cell(row, event.time);
      cell(row, event.component);
      cell(row, event.stage);
      cell(row, event.operation);
      cell(row, event.status, event.status === "FAILED" ? "error" : "");
      cell(row, event.trace_status);
      const said = [event.message, ...(event.errors || []).map(errorText), event.exception];
      cell(row, said.filter(Boolean).join(" | "));
    }
    next = page.next_cursor;
  } while (next);
}

async function showLineage(traceId) {
  const list = $("lineage");
  list.replaceChildren();
  const lineage = await api(traceUrl(traceId, "/lineage"));
  if (!lineage) return;
  const nodes = new Map(lineage.nodes.map((node) => [node.id, node]));
  const label = (id) => {
    const node = nodes.get(id);
    return node.kind === "path" ? node.path : "[" + (step(node) || node.event_id) + "]";
  };
  for (const edge of lineage.edges) {
    const li = document.createElement("li");
    li.textContent = label(edge.from) + " → " + label(edge.to);
    list.appendChild(li);
  }
  if (lineage.truncated) {
    const li = document.createElement("li");
    li.textContent = "… more than " + lineage.edges.length + " inputs and outputs";
    list.appendChild(li);
  }
  if (!list.children.length) list.textContent = "no inputs or outputs reported";
}

async function openTrace(traceId) {
  const mine = {};
  watching = mine;
  $("finder").hidden = true;
  $("trace").hidden = false;
  $("trace-title").textContent = traceId;
  $("trace-live").textContent = "";
  let shown = null;
  let wait = 0;
  try {
    while (watching === mine) {
      const summary = await api(traceUrl(traceId, wait ? "?wait=" + wait : ""));
      if (watching !== mine) return;
      if (!summary) {
        $("trace-live").textContent = "No such trace (yet) in tenant " + tenant() + ".";
      } else if (JSON.stringify(summary) !== shown) {
        shown = JSON.stringify(summary);
        showSummary(summary);
        await Promise.all([showEvents(traceId), showLineage(traceId)]);
        $("trace-live").textContent = summary.done ? "" : "Running: this page updates when it moves.";
      }
      if (summary && summary.done) return;
      wait = 25; // long poll: the server answers once the trace is done or 25 s pass
    }
  } catch (error) {
    $("trace-live").textContent = error.message;
    $("trace-live").className = "error";
  }
}

function route() {
  const match = /^#trace=(.+)$/.exec(location.hash);
  if (match) {
    openTrace(decodeURIComponent(match[1]));
    return;
  }
  watching = null;
  $("trace").hidden = true;
  $("finder").hidden = false;
}

document.addEventListener("DOMContentLoaded", () => {
  $("tenant").value = localStorage.getItem("waymark-tenant") || "default";
  $("tenant").addEventListener("change", () => {
    localStorage.setItem("waymark-tenant", tenant());
    route();
    if (!location.hash) search(false);
  });
  $("search").addEventListener("submit", (e) => { e.preventDefault(); search(false); });
  $("more").addEventListener("click", () => search(true));
  $("open").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("trace_id").value.trim();
    if (id) location.hash = "trace=" + encodeURIComponent(id);
  });
  $("find").addEventListener("submit", (e) => {
    e.preventDefault();
    const path = $("path").value.trim();
    if (path) findPath(path);
  });
  window.addEventListener("hashchange", route);
  route();
  search(false);
});
