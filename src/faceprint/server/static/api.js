// The page's one door to the service: the API key (session storage only, sent only in
// the X-API-Key header, never in a URL), fetch with problem documents turned into
// ApiError, and the message area where every error is shown to the user.

const KEY_SLOT = "faceprint.apiKey";
const ROLES = ["read", "recognise", "enrol", "admin"];

export function storedKey() {
  return sessionStorage.getItem(KEY_SLOT);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_SLOT, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_SLOT);
}

/** Does a key of `role` rank at least `needed` (read < recognise < enrol < admin)? */
export function allows(role, needed) {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed) && ROLES.indexOf(needed) >= 0;
}

/** An answer that was not 2xx, carrying the problem document's fields. */
export class ApiError extends Error {
  constructor({ type = "about:blank", title = "Error", status = 0, detail = "", retryAfter = null }) {
    super(detail ? `${title}: ${detail}` : title);
    this.name = "ApiError";
    this.type = type;
    this.title = title;
    this.status = status;
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

let onUnauthorized = () => {};

/** What to do when the service refuses the key (401): the page signs out. */
export function whenUnauthorized(fn) {
  onUnauthorized = fn;
}

async function problemOf(res) {
  let doc = null;
  const type = res.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      doc = await res.json();
    } catch {
      doc = null;
    }
  }
  return new ApiError({
    type: doc?.type ?? "about:blank",
    title: doc?.title ?? (res.statusText || "Error"),
    status: doc?.status ?? res.status,
    detail: typeof doc?.detail === "string" ? doc.detail : "",
    retryAfter: res.headers.get("retry-after"),
  });
}

/**
 * Call the service. `json` is sent as a JSON body, `form` (FormData) as multipart;
 * `raw: true` answers the Response itself (for streams and reports). Throws ApiError
 * for any answer that is not 2xx, and for a network failure (status 0).
 */
export async function api(path, { method = "GET", json, form, signal, raw = false, key } = {}) {
  const headers = { Accept: "application/json" };
  const k = key ?? storedKey();
  if (k) headers["X-API-Key"] = k;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal, cache: "no-store", credentials: "omit" });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError({ title: "The service cannot be reached", detail: String(err.message || err) });
  }
  if (!res.ok) {
    const problem = await problemOf(res);
    if (problem.status === 401 && key === undefined) onUnauthorized(problem);
    throw problem;
  }
  if (raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

// ---- the message area -----------------------------------------------------------------

const MAX_MESSAGES = 5;

function box() {
  return document.getElementById("messages");
}

function post(kind, title, detail, extra) {
  const area = box();
  const text = `${title}\u0000${detail}`;
  const last = area.firstElementChild;
  if (last && last.dataset.text === text) {
    const n = Number(last.dataset.count || "1") + 1;
    last.dataset.count = String(n);
    last.querySelector(".count").textContent = ` (×${n})`;
    return last;
  }
  const msg = document.createElement("div");
  msg.className = `msg ${kind}`;
  msg.dataset.text = text;
  msg.setAttribute("role", kind === "error" ? "alert" : "status");
  const body = document.createElement("div");
  const head = document.createElement("strong");
  head.textContent = title;
  const count = document.createElement("span");
  count.className = "count";
  body.append(head, count);
  if (detail) {
    const p = document.createElement("p");
    p.textContent = detail;
    body.append(p);
  }
  if (extra) {
    const small = document.createElement("p");
    small.className = "type";
    small.textContent = extra;
    body.append(small);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.setAttribute("aria-label", `Dismiss: ${title}`);
  close.textContent = "×";
  close.addEventListener("click", () => msg.remove());
  msg.append(body, close);
  area.prepend(msg);
  while (area.children.length > MAX_MESSAGES) area.lastElementChild.remove();
  return msg;
}

/** Show an error (an ApiError's problem document, or any other error) to the user. */
export function showError(err, context = "") {
  if (err instanceof ApiError) {
    const head = err.status ? `${err.status} ${err.title}` : err.title;
    post("error", context ? `${context}: ${head}` : head, err.detail, err.type !== "about:blank" ? err.type : "");
  } else {
    post("error", context || "Something went wrong", String(err?.message || err));
  }
}

const INFO_MS = 10_000;

/** Show a short note that something worked (it goes away by itself; errors stay). */
export function showInfo(title, detail = "") {
  const msg = post("info", title, detail);
  setTimeout(() => msg.remove(), INFO_MS);
  return msg;
}

export function clearMessages() {
  box().replaceChildren();
}

/**
 * Wrap an event handler so that nothing it throws goes unseen: errors land in the
 * message area (and never as an unhandled rejection in the console).
 */
export function guard(fn, context = "") {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (err) {
      if (err?.name === "AbortError") return;
      showError(err, context);
    }
  };
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}
