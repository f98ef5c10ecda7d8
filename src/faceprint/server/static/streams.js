// Streams: list the service's streams, start one from the operator's allow-list, and
// watch one's events live. EventSource cannot send the X-API-Key header (and a key must
// never go in a URL), so the events are read with fetch(): the text/event-stream body is
// parsed here, `data:` lines joined per event.

import { api, ApiError, guard, showError } from "./api.js";

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

function describe(ev) {
  const bits = [];
  if (ev.track_id !== undefined) bits.push(`track ${ev.track_id}`);
  if (ev.name !== undefined) bits.push(ev.name);
  if (ev.label !== undefined && ev.name === undefined) bits.push(ev.label);
  if (typeof ev.similarity === "number") bits.push(ev.similarity.toFixed(2));
  if (ev.source !== undefined) bits.push(ev.source);
  if (typeof ev.timestamp === "number") bits.push(`at ${ev.timestamp.toFixed(1)} s`);
  if (ev.error !== undefined) bits.push(String(ev.error));
  if (ev.detail !== undefined) bits.push(String(ev.detail));
  return bits.join(" · ");
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
    const allowed = answer.allowed ?? answer.allow_list ?? answer.sources ?? [];
    const select = $("stream-source");
    const current = select.value;
    select.replaceChildren(
      ...allowed.map((s) => {
        const o = document.createElement("option");
        o.value = typeof s === "string" ? s : s.source;
        o.textContent = o.value;
        return o;
      }),
    );
    if (allowed.length === 0) {
      const o = document.createElement("option");
      o.value = "";
      o.textContent = "(the operator allowed no source)";
      select.append(o);
    }
    if (current) select.value = current;
    const list = $("streams-list");
    const streams = answer.streams ?? [];
    list.replaceChildren(...streams.map((s) => this.row(s)));
    if (!streams.length) {
      const li = document.createElement("li");
      li.className = "hint";
      li.textContent = "No stream is running.";
      list.append(li);
    }
  }

  row(stream) {
    const li = document.createElement("li");
    li.className = "person";
    li.dataset.id = stream.id;
    const main = document.createElement("div");
    main.className = "info";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = stream.source ?? stream.id;
    const state = document.createElement("span");
    state.className = "count";
    state.textContent = [stream.state ?? stream.status, stream.frames != null ? `${stream.frames} frames` : null]
      .filter(Boolean)
      .join(" · ");
    main.append(name, state);
    const actions = document.createElement("div");
    actions.className = "actions";
    const watch = document.createElement("button");
    watch.type = "button";
    watch.textContent = "Watch events";
    watch.setAttribute("aria-label", `Watch events of ${name.textContent}`);
    watch.addEventListener("click", guard(() => this.watch(stream), "Events"));
    const stop = document.createElement("button");
    stop.type = "button";
    stop.className = "danger";
    stop.textContent = "Stop";
    stop.setAttribute("aria-label", `Stop ${name.textContent}`);
    stop.disabled = !this.isAdmin;
    stop.addEventListener("click", guard(() => this.stop(stream), "Stop stream"));
    actions.append(watch, stop);
    li.append(main, actions);
    return li;
  }

  async start(source) {
    await api("/v1/streams", { method: "POST", json: { source } });
    await this.load();
  }

  async stop(stream) {
    await api(`/v1/streams/${encodeURIComponent(stream.id)}`, { method: "DELETE" });
    if (this.watching?.id === stream.id) this.unwatch();
    await this.load();
  }

  async watch(stream) {
    this.unwatch();
    const abort = new AbortController();
    this.watching = { id: stream.id, abort };
    $("events-of").textContent = stream.source ?? stream.id;
    $("events-panel").hidden = false;
    const log = $("stream-events");
    log.replaceChildren();
    const res = await api(`/v1/streams/${encodeURIComponent(stream.id)}/events`, {
      raw: true,
      signal: abort.signal,
    });
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
      if (err?.name !== "AbortError") showError(err, "Events");
    }
    if (this.watching?.abort === abort) {
      const li = document.createElement("li");
      li.className = "hint";
      li.textContent = "The event stream ended.";
      log.prepend(li);
      this.watching = null;
    }
  }

  unwatch() {
    if (this.watching) this.watching.abort.abort();
    this.watching = null;
    $("events-panel").hidden = true;
  }
}

export function setupStreams(session) {
  const streams = new Streams();
  $("stream-form").addEventListener(
    "submit",
    guard(async (ev) => {
      ev.preventDefault();
      const source = $("stream-source").value;
      if (source) await streams.start(source);
    }, "Start stream"),
  );
  $("streams-refresh").addEventListener("click", guard(() => streams.load(), "Streams"));
  $("events-stop").addEventListener("click", () => streams.unwatch());
  return {
    enter: () => {
      streams.isAdmin = session.allows("admin");
      return streams.load().catch((err) => {
        showError(err, "Streams");
      });
    },
    leave: () => streams.unwatch(),
    reset: () => {
      streams.unwatch();
      streams.available = null;
      $("streams-list").replaceChildren();
    },
  };
}
