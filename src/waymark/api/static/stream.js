// The live stream (GET /v1/stream, Server-Sent Events) read with fetch(), since
// EventSource cannot send the Authorization header: messages are parsed as the HTML
// standard parses an event stream, and a lost connection is made again with the last id
// seen as Last-Event-ID, so no change is missed within the server's window.

import { AuthError, answerOf, headersFor, v1 } from "./api.js";

const RETRY_MS = [1000, 2000, 5000, 10000, 30000]; // waits before each reconnection

/** Lines of a stream of bytes, without their line endings (CRLF, LF or CR). */
async function* lines(reader) {
  const decoder = new TextDecoder();
  let rest = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    rest += decoder.decode(value, { stream: true });
    const parts = rest.split(/\r\n|\n|\r(?!$)/);
    rest = parts.pop();
    yield* parts;
  }
}

/**
 * Follows the stream of ``query`` (state, dataset, component) until stopped.
 * ``on.summary(summary)`` for each change, ``on.reset()`` when changes may have been
 * missed (list again), ``on.state(text, ok)`` when it connects or is lost,
 * ``on.error(error)`` for a refusal (AuthError): then it stops.
 */
export class LiveStream {
  constructor(query, on) {
    this.query = query;
    this.on = on;
    this.lastId = "";
    this.abort = new AbortController();
    this.failures = 0;
  }

  start() {
    this.run();
    return this;
  }

  stop() {
    this.abort.abort();
  }

  get stopped() {
    return this.abort.signal.aborted;
  }

  async run() {
    while (!this.stopped) {
      try {
        await this.read();
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof AuthError) {
          this.on.error(error);
          return;
        }
      }
      if (this.stopped) return;
      const wait = RETRY_MS[Math.min(this.failures, RETRY_MS.length - 1)];
      this.failures += 1;
      this.on.state("Reconnecting to live updates…", false);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  async read() {
    const headers = headersFor("text/event-stream");
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    const response = await fetch(v1("stream", this.query), { headers, signal: this.abort.signal });
    if (!response.ok) await answerOf(response); // throws what the answer says
    let event = "";
    let data = [];
    for await (const line of lines(response.body.getReader())) {
      if (line === "") {
        if (data.length) this.dispatch(event || "message", data.join("\n"));
        event = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (name === "event") event = value;
      else if (name === "data") data.push(value);
      else if (name === "id" && !value.includes("\0")) this.lastId = value;
    }
  }

  dispatch(event, data) {
    if (this.stopped) return;
    this.failures = 0;
    if (event === "ready") this.on.state("Live: updates as traces change.", true);
    else if (event === "reset") {
      this.on.state("Live: updates as traces change.", true);
      this.on.reset();
    } else if (event === "summary") this.on.summary(JSON.parse(data));
  }
}
