// The timeline of a trace: one bar per step from its start to its end, coloured by outcome.
//
// A step is what component, stage and operation name together. Its bar starts at an
// IN_PROGRESS (or SUBMITTED) event and ends at the next event of the same step with any
// other status: the two are paired into one bar. An event that carries start_time and
// end_time, or duration_ms, is a bar of its own; any other lone event is a mark at its
// time. A step still in progress runs to "now" while the trace is not done, and grows as
// the page redraws it.

import { duration, el, exact, stepName } from "./util.js";

const OPENING = new Set(["IN_PROGRESS", "SUBMITTED"]);

/** Bars from events in the order the API gives them (sort-key order). */
export function barsOf(events) {
  const bars = [];
  const open = new Map(); // step -> its bar, between an IN_PROGRESS and its end
  for (const event of events) {
    const step = stepName(event);
    const at = Date.parse(event.time);
    const started = open.get(step);
    if (OPENING.has(event.status)) {
      if (started) continue; // a repeated "still in progress": the bar already runs
      const bar = { step, start: at, end: null, status: event.status, events: [event] };
      open.set(step, bar);
      bars.push(bar);
    } else if (started) {
      started.end = at;
      started.status = event.status;
      started.events.push(event);
      open.delete(step);
    } else {
      let start = at;
      if (event.start_time) start = Date.parse(event.start_time);
      else if (event.duration_ms != null) start = at - event.duration_ms;
      bars.push({ step, start, end: at, status: event.status, events: [event] });
    }
  }
  return bars;
}

/** Draw the bars into ``box``; ``running``: the trace is not done, so open bars reach now. */
export function drawTimeline(box, bars, running, now) {
  box.replaceChildren();
  if (!bars.length) {
    box.append(el("p", { className: "quiet" }, "No events yet."));
    return;
  }
  const ends = bars.map((b) => b.end ?? (running ? now : b.start));
  const t0 = Math.min(...bars.map((b) => b.start));
  const t1 = Math.max(...ends, t0 + 1);
  const span = t1 - t0;
  const axis = el(
    "div",
    { className: "axis" },
    el("span", { title: exact(new Date(t0).toISOString()) }, "start"),
    el("span", {}, duration(span) + " in all"),
  );
  box.append(axis);
  bars.forEach((bar, i) => {
    const end = ends[i];
    const growing = bar.end == null && running;
    const unfinished = bar.end == null && !running;
    const took = end - bar.start;
    const label = growing
      ? "running for " + duration(took)
      : unfinished
        ? "no end reported"
        : bar.end === bar.start
          ? "at once"
          : duration(took);
    const fill = el("div", {
      className: "bar " + bar.status + (growing ? " growing" : "") + (unfinished ? " open" : ""),
      title: bar.step + ": " + bar.status + ", " + label,
      "data-status": bar.status,
    });
    // Set through the style object (CSSOM), which the page's CSP allows.
    fill.style.left = ((bar.start - t0) / span) * 100 + "%";
    fill.style.width = Math.max(((end - bar.start) / span) * 100, 0.4) + "%";
    box.append(
      el(
        "div",
        { className: "lane" },
        el("span", { className: "lane-step", title: bar.step }, bar.step),
        el("div", { className: "track" }, fill),
        el("span", { className: "lane-time" }, bar.status + " · " + label),
      ),
    );
  });
}
