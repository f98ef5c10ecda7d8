// Streams: list the service's streams, start one from the operator's allow-list, and
// watch one's events live. EventSource cannot send the X-API-Key header (and a key must
// never go in a URL), so the events are read with fetch(): the text/event-stream body is
// parsed here, `data:` lines joined per event.

import { api, ApiError, guard } from "./api.js";

const MAX_EVENTS = 200;
const $ = (id) => document.getElementById(id);

/**
 * Parse a text/event-stream body (a ReadableStream of bytes), calling `onEvent(name, data)`
 * for each event: its `data:` lines joined by newlines, dispatched at the blank line that
 * ends it (an event cut off by the end of the stream is dropped, as the SSE spec says).
 */
export async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let name = "";
  let data = [];
  const line = (text) => {
    if (text === "") {
      if (data.length) onEvent(name || "message", data.join("\n"));
      name = "";
      data = [];
      return;
    }
    if (text.startsWith(":")) return; // a comment (keep-alive)
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") name = value;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    for (;;) {
      const end = /\r\n|\r|\n/.exec(buffer);
      if (!end) break;
      if (end[0] === "\r" && end.index === buffer.length - 1) break; // maybe half a CRLF
      line(buffer.slice(0, end.index));
      buffer = buffer.slice(end.index + end[0].length);
    }
  }
}

/** One event of `faceprint watch --events` in a few words. */
function describe(ev) {
  const bits = [];
  if (ev.track_id !== undefined) bits.push(`track ${ev.track_id}`);
  if (ev.name !== undefined) bits.push(ev.name);
  else if (ev.label !== undefined) bits.push(ev.label);
  if (typeof ev.similarity === "number") bits.push(ev.similarity.toFixed(2));
  if (ev.event === "run_started") bits.push(ev.source, `${ev.detector} + ${ev.embedder}`);
  if (ev.event === "run_ended") bits.push(ev.state, `${ev.frames} frames`);
  if (typeof ev.timestamp === "number") {
    // seconds into a file, or wall-clock seconds for a camera or a file played in real time
    const t = ev.timestamp;
    bits.push(t > 1e9 ? new Date(t * 1000).toLocaleTimeString() : `at ${t.toFixed(1)} s`);
  }
  if (ev.error) bits.push(String(ev.error));
  if (ev.detail !== undefined) bits.push(String(ev.detail));
  return bits.filter((b) => b !== undefined && b !== null && b !== "").join(" · ");
}

class Streams {
  constructor() {
    this.available = null;
    this.watching = null;
    this.isAdmin = false;
  }

  async probe() {
    // Ask the schema rather than the route, so that a service without streams does not
    // log a 404 in the browser's console.
    const schema = await api("/openapi.json");
    return Boolean(schema.paths && schema.paths["/v1/streams"]);
  }

  async load() {
    if (this.available === null) this.available = await this.probe();
    let answer = null;
    if (this.available) {
      try {
        answer = await api("/v1/streams");
      } catch (err) {
        if (!(err instanceof ApiError && err.status === 404)) throw err;
        this.available = false;
      }
    }
    $("streams-unavailable").hidden = this.available;
    $("streams-ui").hidden = !this.available;
    if (!answer) return;
    if (this.isAdmin) await this.loadSources();
    const list = $("streams-list");
    const streams = answer.streams ?? [];
    list.replaceChildren(...streams.map((s) => this.row(s)));
    if (!streams.length) {
      const li = document.createElement("li");
      li.className = "hint";
      li.textContent = "No stream yet.";
      list.append(li);
    }
  }

  async loadSources() {
    const { sources } = await api("/v1/streams/sources");
    const select = $("stream-source");
    const current = select.value;
    select.replaceChildren(
      ...sources.map((s) => {
        const o = document.createElement("option");
        o.value = String(s);
        o.textContent = String(s);
        return o;
      }),
    );
    if (!sources.length) {
      const o = document.createElement("option");
      o.value = "";
      o.textContent = "(none: the operator allows sources with faceprint serve --stream)";
      select.append(o);
    }
    if (current && sources.map(String).includes(current)) select.value = current;
  }

  row(stream) {
    const li = document.createElement("li");
    li.className = "person";
    li.dataset.id = stream.id;
    li.dataset.state = stream.state;
    const main = document.createElement("div");
    main.className = "info";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = stream.source;
    const state = document.createElement("span");
    state.className = "count";
    const bits = [stream.state, `${stream.frames} frames`];
    if (stream.dropped) bits.push(`${stream.dropped} dropped`);
    if (stream.error) bits.push(stream.error);
    state.textContent = bits.join(" · ");
    main.append(name, state);
    const actions = document.createElement("div");
    actions.className = "actions";
    const watch = document.createElement("button");
    watch.type = "button";
    watch.textContent = "Watch events";
    watch.setAttribute("aria-label", `Watch events of ${stream.source}`);
    watch.addEventListener("click", guard(() => this.watch(stream), "Events"));
    actions.append(watch);
    if (stream.state === "running") {
      const stop = document.createElement("button");
      stop.type = "button";
      stop.className = "danger";
      stop.textContent = "Stop";
      stop.setAttribute("aria-label", `Stop ${stream.source}`);
      stop.disabled = !this.isAdmin;
      stop.addEventListener("click", guard(() => this.stop(stream), "Stop stream"));
      actions.append(stop);
    }
    li.append(main, actions);
    return li;
  }

  async start(source, realtime) {
    const stream = await api("/v1/streams", { method: "POST", json: { source, realtime } });
    await this.load();
    await this.watch(stream);
  }

  async stop(stream) {
    await api(`/v1/streams/${encodeURIComponent(stream.id)}`, { method: "DELETE" });
    await this.load();
  }

  async watch(stream) {
    this.unwatch();
    const abort = new AbortController();
    this.watching = { id: stream.id, abort };
    $("events-of").textContent = stream.source;
    $("events-panel").hidden = false;
    const log = $("stream-events");
    log.replaceChildren();
    const note = (text) => {
      const li = document.createElement("li");
      li.className = "hint";
      li.textContent = text;
      log.prepend(li);
    };
    const res = await api(`/v1/streams/${encodeURIComponent(stream.id)}/events`, {
      raw: true,
      signal: abort.signal,
    });
    if (res.status === 204 || !res.body) {
      note("The stream has ended and every event of it was shown.");
      return;
    }
    try {
      await readEvents(res.body, (name, data) => {
        let ev;
        try {
          ev = JSON.parse(data);
        } catch {
          ev = { detail: data };
        }
        const li = document.createElement("li");
        const kind = document.createElement("strong");
        kind.textContent = ev.event ?? name;
        li.dataset.event = kind.textContent;
        if (ev.name !== undefined) li.dataset.name = ev.name;
        li.append(kind, document.createTextNode(` ${describe(ev)}`));
        log.prepend(li);
        while (log.children.length > MAX_EVENTS) log.lastElementChild.remove();
      });
    } catch (err) {
      if (err?.name === "AbortError") return;
      throw err;
    }
    if (this.watching?.abort === abort) {
      note("The event stream ended.");
      this.watching = null;
      await this.load();
    }
  }

  unwatch() {
    if (this.watching) this.watching.abort.abort();
    this.watching = null;
  }
}

export function setupStreams(session) {
  const streams = new Streams();
  $("stream-form").addEventListener(
    "submit",
    guard(async (ev) => {
      ev.preventDefault();
      const source = $("stream-source").value;
      if (source) await streams.start(source, $("stream-realtime").checked);
    }, "Start stream"),
  );
  $("streams-refresh").addEventListener("click", guard(() => streams.load(), "Streams"));
  $("events-stop").addEventListener("click", () => streams.unwatch());
  return {
    enter: () => {
      streams.isAdmin = session.allows("admin");
      return streams.load();
    },
    leave: () => streams.unwatch(),
    reset: () => {
      streams.unwatch();
      streams.available = null;
      $("events-panel").hidden = true;
      $("stream-events").replaceChildren();
      $("streams-list").replaceChildren();
    },
  };
}
