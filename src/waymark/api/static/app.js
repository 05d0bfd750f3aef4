// Waymark's page: the traces (searched, paged, kept up to date), an overview by dataset,
// and one trace as it goes (timeline, failures, data flow, events), through /v1 only.
//
// What is shown lives in the URL's fragment (tenant, filters, view, open trace), so a link
// shows the same thing to whoever opens it; the key or token never goes in the URL.

import { AuthError, get, setToken, token, tracePath, useTenant } from "./api.js";
import { Lineage, drawGraph } from "./graph.js";
import { LiveStream } from "./stream.js";
import { barsOf, drawTimeline } from "./timeline.js";
import { $, duration, el, stateBadge, statusBadge, stepName, timeEl } from "./util.js";

const FILTERS = ["state", "dataset", "component", "stage"];
const LIST_LIMIT = 50;
const EVENT_PAGE = 500;
const EVENT_PAGES = 4; // read at once; "More events" reads further
const POLL_MS = 5000; // how often the page looks whether something is due
const LIST_POLL_MS = 60000; // the list, besides the live stream that updates it
const RELIST_MS = 1000; // the list is read again at most this often on the stream's word
const OVERVIEW_POLL_MS = 30000; // the overview: it counts up to 100,000 traces twice
const TRACE_POLL_MS = 2000; // an open trace that is not done
let generation = 0; // bumped whenever the view changes: stale loops and answers stop
let overviewAt = 0; // when the overview was last read
let listAt = 0; // when the list was last read
let listed = []; // the summaries the list shows (first page: kept up to date by the stream)
let live = null; // the LiveStream of the list, while the list is shown
let relisting = null; // a pending read of the list asked for by the stream

// -- the URL -------------------------------------------------------------------------------

function params() {
  return new URLSearchParams(location.hash.slice(1));
}

/** A fragment link keeping the tenant (and, unless ``fresh``, the filters) of this one. */
function link(changes, fresh) {
  const next = new URLSearchParams();
  const now = params();
  const keep = fresh ? ["tenant"] : ["tenant", ...FILTERS];
  for (const name of keep) if (now.get(name)) next.set(name, now.get(name));
  for (const [name, value] of Object.entries(changes)) {
    if (value) next.set(name, value);
    else next.delete(name);
  }
  return "#" + next.toString();
}

function tenant() {
  return params().get("tenant") || "";
}

// -- messages ------------------------------------------------------------------------------

function fail(error, where) {
  if (error instanceof AuthError) {
    $("auth-message").textContent = error.message;
    // Nothing read with an earlier credential stays on show.
    listed = [];
    for (const id of ["traces", "overview-table", "events"]) $(id).tBodies[0].replaceChildren();
    for (const id of ["summary", "timeline", "failures", "graph"]) $(id).replaceChildren();
  } else {
    where.textContent = error.message;
    where.className = "error";
  }
}

function say(where, text) {
  where.textContent = text || "";
  where.className = "";
}

// -- the list ------------------------------------------------------------------------------

const pages = { cursors: [null], at: 0 }; // the cursor of each page seen, for Newer/Older

function summaryDuration(summary, now) {
  if (!summary.started_at) return "";
  if (!summary.done) return duration(now - Date.parse(summary.started_at)) + " so far";
  if (summary.duration_ms != null) return duration(summary.duration_ms);
  return duration(Date.parse(summary.finished_at || summary.updated_at) - Date.parse(summary.started_at));
}

function errorCount(summary) {
  return summary.error_count ?? summary.errors.length;
}

function traceRow(summary, now) {
  const errors = errorCount(summary);
  return el(
    "tr",
    {},
    el("td", { className: "id" }, el("a", { href: link({ trace: summary.trace_id }) }, summary.trace_id)),
    el("td", {}, stateBadge(summary.state)),
    el("td", {}, timeEl(summary.started_at, now)),
    el("td", {}, summaryDuration(summary, now)),
    el(
      "td",
      {},
      stepName(summary.current),
      " ",
      statusBadge(summary.current.status),
      summary.done ? "" : el("span", { className: "quiet" }, " silent for " + duration(now - Date.parse(summary.updated_at))),
    ),
    el("td", { className: errors ? "error num" : "num" }, String(errors)),
    el("td", {}, summary.domain_id || ""),
  );
}

async function showList(mine) {
  const query = { limit: String(LIST_LIMIT) };
  for (const name of FILTERS) if (params().get(name)) query[name] = params().get(name);
  const cursor = pages.cursors[pages.at];
  if (cursor) query.cursor = cursor;
  try {
    listAt = Date.now();
    const page = await get("traces", query);
    if (mine !== generation) return;
    listed = page.items;
    drawList();
    pages.cursors[pages.at + 1] = page.next_cursor;
    $("older").disabled = !page.next_cursor;
    $("newer").disabled = pages.at === 0;
    $("page-info").textContent = "page " + (pages.at + 1);
    if (!live) $("live").textContent = "Updated " + new Date().toLocaleTimeString() + "; updates every " + LIST_POLL_MS / 1000 + " s.";
  } catch (error) {
    if (mine === generation) fail(error, $("message"));
  }
}

function drawList() {
  const now = Date.now();
  $("traces").tBodies[0].replaceChildren(...listed.map((s) => traceRow(s, now)));
  say($("message"), listed.length ? "" : "No traces match.");
}

/** Whether the list's filters take ``summary``; null when the page cannot tell (a search by
 * component or stage matches any step of a trace, the stream only its current one). */
function listTakes(summary) {
  const now = params();
  if (now.get("component") || now.get("stage")) return null;
  if (now.get("state") && summary.state !== now.get("state")) return false;
  const dataset = now.get("dataset");
  const domainId = summary.domain_id || "";
  return !dataset || domainId === dataset || domainId.startsWith(dataset + "/");
}

/** A change from the stream, into the first page of the list (most recently updated first). */
function merge(summary, mine) {
  if (mine !== generation || pages.at !== 0) return;
  const takes = listTakes(summary);
  if (takes === null) {
    relist(mine);
    return;
  }
  const others = listed.filter((s) => s.trace_id !== summary.trace_id);
  if (takes) {
    others.push(summary);
    others.sort((a, b) => Date.parse(b.updated_at) - Date.parse(a.updated_at));
  }
  listed = others.slice(0, LIST_LIMIT);
  drawList();
}

/** Read the list again soon (at most once a RELIST_MS). */
function relist(mine) {
  if (relisting) return;
  relisting = setTimeout(() => {
    relisting = null;
    if (mine === generation) showList(mine);
  }, RELIST_MS);
}

function follow(mine) {
  const query = new URLSearchParams();
  for (const name of ["state", "dataset"]) if (params().get(name)) query.set(name, params().get(name));
  live = new LiveStream(query, {
    summary: (summary) => merge(summary, mine),
    reset: () => relist(mine),
    state: (text, ok) => {
      if (mine !== generation) return;
      $("live").textContent = text;
      if (!ok) listAt = 0; // the stream is lost: the next poll reads the list
    },
    error: (error) => {
      if (mine !== generation) return;
      live = null; // refused: the list is read every POLL_MS instead
      fail(error, $("message"));
    },
  }).start();
}

function stopFollowing() {
  if (live) live.stop();
  live = null;
}

async function findPath(path, mine) {
  try {
    const found = await get("paths", { path, limit: "100" });
    const ids = [...new Set(found.items.map((hit) => hit.trace_id))];
    const summaries = await Promise.all(ids.map((id) => get(tracePath(id))));
    if (mine !== generation) return;
    const now = Date.now();
    $("traces").tBodies[0].replaceChildren(...summaries.filter(Boolean).map((s) => traceRow(s, now)));
    say($("message"), ids.length ? "Traces that touched " + path + ":" : "No trace touched " + path + ".");
  } catch (error) {
    fail(error, $("message"));
  }
}

// -- the overview --------------------------------------------------------------------------

const STATES = ["FAILED", "STALLED", "RUNNING", "SUCCEEDED"];

/** A dataset's counts by state; each count that is not 0 leads to those traces. */
function countsCell(counts, dataset) {
  const td = el("td", { className: "counts" });
  for (const state of STATES) {
    const n = counts ? counts[state] : 0;
    const className = "count " + state + (n ? "" : " none");
    if (!n || dataset === undefined) {
      td.append(el("span", { className, title: state }, String(n)));
    } else {
      const to = link({ dataset, state, view: null }, true);
      td.append(el("a", { className, title: state, href: to }, String(n)));
    }
  }
  return td;
}

async function showOverview(mine) {
  overviewAt = Date.now();
  const since = (days) => new Date(Date.now() - days * 86400000).toISOString();
  try {
    const [day, week] = await Promise.all([
      get("overview", { since: since(1), limit: "500" }),
      get("overview", { since: since(7), limit: "500" }),
    ]);
    if (mine !== generation) return;
    const rows = new Map();
    for (const [key, view] of [["day", day], ["week", week]]) {
      for (const d of view.datasets) {
        const row = rows.get(d.dataset) || { dataset: d.dataset };
        row[key] = d.counts;
        rows.set(d.dataset, row);
      }
    }
    const weight = (row, state) => (row.day ? row.day[state] : 0) * 1e6 + (row.week ? row.week[state] : 0);
    const sorted = [...rows.values()].sort(
      (a, b) => weight(b, "FAILED") - weight(a, "FAILED") || weight(b, "STALLED") - weight(a, "STALLED")
        || String(a.dataset).localeCompare(String(b.dataset)),
    );
    const body = $("overview-table").tBodies[0];
    const name = (row) =>
      row.dataset == null ? "(no dataset)" : el("a", { href: link({ dataset: row.dataset, view: null }, true) }, row.dataset);
    // A dataset's counts lead to its traces; the counts of traces that name none, nowhere.
    const key = (row) => (row.dataset == null ? undefined : row.dataset);
    body.replaceChildren(
      el("tr", { className: "all" }, el("th", {}, "all datasets"), countsCell(day.counts), countsCell(week.counts)),
      ...sorted.map((row) =>
        el("tr", { className: row.day && row.day.FAILED ? "failing" : "" },
          el("td", {}, name(row)), countsCell(row.day, key(row)), countsCell(row.week, key(row)))),
    );
    const notes = [];
    if (week.more_datasets) notes.push(week.more_datasets + " more datasets not listed.");
    if (day.truncated || week.truncated) notes.push("Only the most recently updated traces were counted.");
    say($("overview-note"), notes.join(" "));
  } catch (error) {
    if (mine === generation) fail(error, $("overview-note"));
  }
}

// -- one trace -----------------------------------------------------------------------------

function field(dl, name, ...value) {
  if (value.every((v) => v == null || v === "")) return;
  dl.append(el("dt", {}, name), el("dd", {}, ...value));
}

function showSummary(summary, now) {
  const dl = $("summary");
  dl.replaceChildren();
  field(dl, "state", stateBadge(summary.state));
  if (!summary.done && summary.started_at) {
    const since = now - Date.parse(summary.started_at);
    const silent = now - Date.parse(summary.updated_at);
    field(dl, "running", "for " + duration(since) + ", silent for " + duration(silent));
  }
  field(dl, "done", summary.done ? "yes" : "no");
  field(dl, "trace status", summary.trace_status);
  field(dl, "event status", summary.trace_event_status);
  field(dl, "current step", stepName(summary.current), " ", statusBadge(summary.current.status));
  field(dl, "dataset", summary.domain_id);
  field(dl, "user", summary.user);
  field(dl, "started", timeEl(summary.started_at, now));
  field(dl, "updated", timeEl(summary.updated_at, now));
  field(dl, "finished", timeEl(summary.finished_at, now));
  field(dl, "duration", summary.done ? summaryDuration(summary, now) : "");
  field(dl, "events", String(summary.event_count));
  field(dl, "errors", String(errorCount(summary)));
}

/** Every language of an okdata error message, or the error as JSON when it has another shape. */
function errorItem(error) {
  const message = error && error.message;
  if (message && typeof message === "object") {
    const dl = el("dl", { className: "languages" });
    for (const [lang, text] of Object.entries(message)) dl.append(el("dt", {}, lang), el("dd", {}, String(text)));
    return dl;
  }
  return el("span", {}, typeof error === "string" ? error : JSON.stringify(error));
}

function failureOf(event) {
  const hasErrors = event.errors && event.errors.length;
  if (event.status !== "FAILED" && !hasErrors && !event.exception && event.error_code == null) return null;
  const card = el(
    "article",
    { className: "failure" },
    el("h4", {}, stepName(event), " ", statusBadge(event.status), " ", timeEl(event.time)),
  );
  if (event.message) card.append(el("p", { className: "message" }, event.message));
  if (event.error_code != null) card.append(el("p", {}, "error_code ", el("code", {}, String(event.error_code))));
  if (hasErrors) card.append(el("ul", { className: "errors" }, ...event.errors.map((e) => el("li", {}, errorItem(e)))));
  if (event.exception) card.append(el("pre", { className: "exception" }, event.exception));
  return card;
}

function eventRow(event, now) {
  return el(
    "tr",
    {},
    el("td", {}, timeEl(event.time, now)),
    el("td", {}, stepName(event)),
    el("td", {}, statusBadge(event.status)),
    el("td", {}, event.trace_status),
    el("td", {}, event.duration_ms != null ? duration(event.duration_ms) : ""),
    el("td", {}, event.message || ""),
    el("td", {}, event.submitted_by || ""),
  );
}

class TraceView {
  constructor(traceId, mine) {
    this.traceId = traceId;
    this.mine = mine;
    this.events = [];
    this.eventsNext = null;
    this.shown = null;
    this.summary = null;
    this.lineage = new Lineage();
  }

  live() {
    return this.mine === generation;
  }

  async readEvents(pages) {
    for (let i = 0; i < pages; i++) {
      const query = { limit: String(EVENT_PAGE) };
      if (this.eventsNext) query.cursor = this.eventsNext;
      const page = await get(tracePath(this.traceId, "/events"), query);
      if (!page) return;
      this.events.push(...page.items);
      this.eventsNext = page.next_cursor;
      if (!this.eventsNext) return;
    }
  }

  async readLineage() {
    const query = this.lineage.next ? { cursor: this.lineage.next } : undefined;
    const page = await get(tracePath(this.traceId, "/lineage"), query);
    if (page) this.lineage.add(page);
  }

  drawLineage() {
    drawGraph($("graph"), this.lineage);
    const { steps, files } = this.lineage.counts();
    const note = steps + " steps, " + files + " files";
    say($("lineage-note"), this.lineage.truncated || this.lineage.next ? note + "; truncated: more to read." : note);
    $("lineage-more").hidden = !this.lineage.next;
  }

  draw(now) {
    const summary = this.summary;
    showSummary(summary, now);
    drawTimeline($("timeline"), barsOf(this.events), !summary.done, now);
    const cards = this.events.map(failureOf).filter(Boolean);
    $("failures").replaceChildren(...(cards.length ? cards : [el("p", { className: "quiet" }, "None.")]));
    if (!cards.length && summary.errors.length) {
      $("failures").replaceChildren(el("ul", { className: "errors" }, ...summary.errors.map((e) => el("li", {}, errorItem(e)))));
    }
    $("events").tBodies[0].replaceChildren(...this.events.map((e) => eventRow(e, now)));
    $("events-more").hidden = !this.eventsNext;
    $("trace-live").textContent = summary.done ? "" : "Running: this page follows it.";
  }

  /** Read the trace again whenever its summary moves, until it is done. */
  async follow() {
    $("trace-title").textContent = this.traceId;
    for (const id of ["summary", "timeline", "failures", "graph"]) $(id).replaceChildren();
    $("events").tBodies[0].replaceChildren();
    say($("trace-live"), "Loading…");
    try {
      while (this.live()) {
        const summary = await get(tracePath(this.traceId));
        if (!this.live()) return;
        if (!summary) {
          say($("trace-live"), "No trace " + this.traceId + " (yet) in tenant " + (tenant() || "default") + ".");
        } else if (JSON.stringify(summary) !== this.shown) {
          this.shown = JSON.stringify(summary);
          this.summary = summary;
          this.events = [];
          this.eventsNext = null;
          await this.readEvents(EVENT_PAGES);
          this.lineage = new Lineage();
          await this.readLineage();
          if (!this.live()) return;
          this.draw(Date.now());
          this.drawLineage();
        }
        if (summary && summary.done) return;
        await new Promise((resolve) => setTimeout(resolve, TRACE_POLL_MS));
      }
    } catch (error) {
      if (this.live()) fail(error, $("trace-live"));
    }
  }

  /** The running step grows, and the summary's times move on, once a second. */
  tick() {
    if (!this.live() || !this.summary || this.summary.done) return;
    const now = Date.now();
    showSummary(this.summary, now);
    drawTimeline($("timeline"), barsOf(this.events), true, now);
  }
}

let current = null;

// -- routing -------------------------------------------------------------------------------

function show(section) {
  for (const id of ["finder", "overview", "trace"]) $(id).hidden = id !== section;
  $("nav-traces").classList.toggle("here", section === "finder");
  $("nav-overview").classList.toggle("here", section === "overview");
}

function fillForm() {
  const now = params();
  $("tenant").value = now.get("tenant") || "";
  for (const name of FILTERS) $(name).value = now.get(name) || "";
  $("path").value = now.get("path") || "";
  $("nav-traces").href = link({}, false);
  $("nav-overview").href = link({ view: "overview" }, true);
  $("home").href = link({}, true);
}

function route() {
  const mine = ++generation;
  current = null;
  stopFollowing();
  say($("auth-message"), "");
  fillForm();
  const now = params();
  if (now.get("trace")) {
    show("trace");
    $("back").href = link({ trace: null });
    current = new TraceView(now.get("trace"), mine);
    current.follow();
  } else if (now.get("view") === "overview") {
    show("overview");
    showOverview(mine);
  } else {
    show("finder");
    if (now.get("path")) findPath(now.get("path"), mine);
    else {
      follow(mine); // first, so that no change between the list's read and the stream's start is missed
      showList(mine);
    }
  }
}

/** Show ``hash``: through hashchange when it differs from the current one, else again. */
function go(hash) {
  if (hash === location.hash || (hash === "#" && !location.hash)) route();
  else location.hash = hash;
}

function poll() {
  if (document.hidden) return;
  const mine = generation;
  const listDue = Date.now() - listAt >= (live ? LIST_POLL_MS : POLL_MS);
  if (!$("finder").hidden && !params().get("path") && listDue) showList(mine);
  if (!$("overview").hidden && Date.now() - overviewAt >= OVERVIEW_POLL_MS) showOverview(mine);
}

function updateSignIn() {
  const signedIn = Boolean(token());
  $("signout").hidden = !signedIn;
  $("signin-state").textContent = signedIn ? "Signed in (this tab)" : "";
  $("token").value = "";
  $("token").placeholder = signedIn ? "replace key or token" : "API key or token";
}

document.addEventListener("DOMContentLoaded", () => {
  useTenant(tenant);
  updateSignIn();
  $("signin").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    if (value) setToken(value);
    const typed = $("tenant").value.trim();
    updateSignIn();
    go(link({ tenant: typed }));
  });
  $("tenant").addEventListener("change", () => go(link({ tenant: $("tenant").value.trim() })));
  $("signout").addEventListener("click", () => {
    setToken("");
    updateSignIn();
    route();
  });
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    const changes = { path: null };
    for (const name of FILTERS) changes[name] = $(name).value.trim();
    go(link(changes));
  });
  $("find").addEventListener("submit", (e) => {
    e.preventDefault();
    go(link({ path: $("path").value.trim() }));
  });
  $("open").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("trace_id").value.trim();
    if (id) go(link({ trace: id }));
  });
  $("older").addEventListener("click", () => {
    pages.at += 1;
    showList(generation);
  });
  $("newer").addEventListener("click", () => {
    pages.at = Math.max(0, pages.at - 1);
    showList(generation);
  });
  $("events-more").addEventListener("click", async () => {
    const view = current;
    try {
      await view.readEvents(1);
      if (view.live()) view.draw(Date.now());
    } catch (error) {
      fail(error, $("trace-live"));
    }
  });
  $("lineage-more").addEventListener("click", async () => {
    const view = current;
    try {
      await view.readLineage();
      if (view.live()) view.drawLineage();
    } catch (error) {
      fail(error, $("lineage-note"));
    }
  });
  window.addEventListener("hashchange", () => {
    pages.cursors = [null];
    pages.at = 0;
    route();
  });
  setInterval(poll, POLL_MS);
  setInterval(() => {
    if (current) current.tick();
    else if (!$("finder").hidden && !params().get("path") && listed.length) drawList(); // times move on
  }, 1000);
  route();
});
