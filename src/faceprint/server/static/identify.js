// Identify: uploaded photos (each drawn with its faces' boxes and names) and the webcam
// (a frame every 1/fps seconds, sent as JPEG to /v1/identify, one request at a time,
// names drawn over the live video).

import { api, ApiError, guard, showError, sleep } from "./api.js";
import { closeCamera, grabFrame, openCamera, toJpeg } from "./camera.js";
import { drawFaces, faceText, showOperatingPoint } from "./draw.js";

const BATCH = 8; // photos per request (the service's default limit is 16)

const $ = (id) => document.getElementById(id);

function loadImage(file) {
  return new Promise((resolve) => {
    const url = URL.createObjectURL(file);
    const img = new Image();
    img.onload = () => resolve({ img, url });
    img.onerror = () => {
      URL.revokeObjectURL(url);
      resolve({ img: null, url: null });
    };
    img.src = url;
  });
}

function faceList(entry) {
  const list = document.createElement("ol");
  list.className = "faces";
  entry.faces.forEach((rec) => {
    const li = document.createElement("li");
    li.dataset.label = rec.label;
    const name = document.createElement("span");
    name.className = rec.label === "unknown" ? "label unknown" : "label known";
    name.textContent = faceText(rec);
    li.append(name);
    const others = (rec.matches || []).slice(rec.label === "unknown" ? 0 : 1);
    if (others.length && !rec.reason) {
      const more = document.createElement("span");
      more.className = "hint";
      more.textContent = ` · ${rec.label === "unknown" ? "nearest" : "next"}: ${others.map((m) => `${m.identity} ${m.similarity.toFixed(2)}`).join(", ")}`;
      li.append(more);
    }
    list.append(li);
  });
  return list;
}

async function renderResult(container, file, entry) {
  const fig = document.createElement("figure");
  fig.className = "result";
  fig.dataset.image = entry.image;
  const { img, url } = await loadImage(file);
  if (img) {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    drawFaces(ctx, entry.faces, { numbered: entry.faces.length > 1 });
    URL.revokeObjectURL(url);
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${entry.image}: ${entry.faces.map((f) => f.label).join(", ") || "no face"}`);
    fig.append(canvas);
  }
  const cap = document.createElement("figcaption");
  const title = document.createElement("strong");
  title.textContent = entry.image;
  cap.append(title);
  if (entry.faces.length) {
    cap.append(faceList(entry));
  } else {
    const none = document.createElement("p");
    none.className = "hint";
    none.textContent = "No face found.";
    cap.append(none);
  }
  if (entry.faces_dropped) {
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = `${entry.faces_dropped} smaller faces were not searched (the per-image limit).`;
    cap.append(p);
  }
  fig.append(cap);
  container.append(fig);
}

async function identifyFiles(files) {
  const out = $("identify-results");
  const button = $("identify-submit");
  out.replaceChildren();
  button.disabled = true;
  try {
    for (let i = 0; i < files.length; i += BATCH) {
      const chunk = files.slice(i, i + BATCH);
      const form = new FormData();
      chunk.forEach((f) => form.append("image", f, f.name));
      const answer = await api("/v1/identify", { method: "POST", form });
      showOperatingPoint($("identify-op"), answer.operating_point);
      for (let j = 0; j < chunk.length; j += 1) await renderResult(out, chunk[j], answer.images[j]);
    }
  } finally {
    button.disabled = false;
  }
}

// ---- webcam ---------------------------------------------------------------------------

class Webcam {
  constructor() {
    this.video = $("webcam-video");
    this.overlay = $("webcam-overlay");
    this.frame = document.createElement("canvas");
    this.stream = null;
    this.abort = null;
    this.seen = new Map();
  }

  get running() {
    return this.stream !== null;
  }

  async start() {
    if (this.running) return;
    $("webcam-start").disabled = true;
    $("webcam-status").textContent = "Opening the camera…";
    try {
      this.stream = await openCamera(this.video);
    } catch (err) {
      $("webcam-status").textContent = "The camera is off.";
      $("webcam-start").disabled = false;
      throw err;
    }
    this.seen.clear();
    this.showLabels([]);
    $("webcam-stage").hidden = false;
    $("webcam-stop").disabled = false;
    $("webcam-status").textContent = "Camera on: recognising…";
    this.abort = new AbortController();
    this.loop(this.abort.signal).catch((err) => {
      if (err?.name !== "AbortError") showError(err, "Webcam");
      this.stop();
    });
  }

  stop() {
    if (this.abort) this.abort.abort();
    this.abort = null;
    if (this.stream) closeCamera(this.video, this.stream);
    this.stream = null;
    $("webcam-stage").hidden = true;
    $("webcam-start").disabled = false;
    $("webcam-stop").disabled = true;
    $("webcam-status").textContent = "The camera is off.";
    $("webcam-labels").replaceChildren();
    delete $("webcam-labels").dataset.labels;
  }

  async loop(signal) {
    while (!signal.aborted) {
      const began = performance.now();
      const fps = Number($("webcam-fps").value) || 3;
      if (this.video.videoWidth) {
        const canvas = grabFrame(this.video, this.frame);
        const blob = await toJpeg(canvas);
        const form = new FormData();
        form.append("image", blob, "webcam.jpg");
        try {
          const answer = await api("/v1/identify", { method: "POST", form, signal });
          if (signal.aborted) return;
          this.show(answer, canvas.width, canvas.height, performance.now() - began);
        } catch (err) {
          if (err instanceof ApiError && (err.status === 429 || err.status === 503)) {
            $("webcam-status").textContent = `The service is busy (${err.status}); waiting…`;
            await sleep(1000 * (Number(err.retryAfter) || 1), signal);
            continue;
          }
          throw err;
        }
      }
      await sleep(Math.max(0, 1000 / fps - (performance.now() - began)), signal);
    }
  }

  show(answer, width, height, ms) {
    const faces = answer.images[0]?.faces ?? [];
    this.overlay.width = width;
    this.overlay.height = height;
    const ctx = this.overlay.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    drawFaces(ctx, faces);
    showOperatingPoint($("webcam-op"), answer.operating_point);
    const labels = faces.map((f) => f.label);
    this.showLabels(labels);
    for (const label of labels) this.seen.set(label, (this.seen.get(label) || 0) + 1);
    const seen = $("webcam-seen");
    seen.replaceChildren(
      ...[...this.seen.entries()].map(([label, n]) => {
        const li = document.createElement("li");
        li.dataset.label = label;
        li.className = label === "unknown" ? "unknown" : "known";
        li.textContent = `${label} · ${n} ${n === 1 ? "frame" : "frames"}`;
        return li;
      }),
    );
    seen.dataset.labels = [...this.seen.keys()].join("\n");
    const n = faces.length;
    $("webcam-status").textContent =
      `Camera on: ${n} ${n === 1 ? "face" : "faces"} in the last frame (${Math.round(ms)} ms).`;
  }

  showLabels(labels) {
    const list = $("webcam-labels");
    list.replaceChildren(
      ...labels.map((label) => {
        const li = document.createElement("li");
        li.dataset.label = label;
        li.className = label === "unknown" ? "unknown" : "known";
        li.textContent = label;
        return li;
      }),
    );
    list.dataset.labels = labels.join("\n");
  }
}

export function setupIdentify() {
  const webcam = new Webcam();
  $("identify-form").addEventListener(
    "submit",
    guard(async (ev) => {
      ev.preventDefault();
      const files = [...$("identify-files").files];
      if (files.length) await identifyFiles(files);
    }, "Identify"),
  );
  $("webcam-start").addEventListener("click", guard(() => webcam.start(), "Webcam"));
  $("webcam-stop").addEventListener("click", () => webcam.stop());
  return {
    leave: () => webcam.stop(),
    reset: () => {
      webcam.stop();
      webcam.seen.clear();
      $("webcam-seen").replaceChildren();
      $("identify-results").replaceChildren();
      $("identify-op").hidden = true;
      $("webcam-op").hidden = true;
      $("identify-form").reset();
    },
  };
}
