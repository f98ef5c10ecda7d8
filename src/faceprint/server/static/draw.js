// Drawing recognitions: boxes (xyxy pixels of the image sent) and their labels on a
// canvas, and the operating point an answer was made under.

const KNOWN = "#14b84b";
const UNKNOWN = "#f5a623";

/** The words shown for one face: its name and similarity, or unknown and why when it was not searched. */
export function faceText(rec) {
  const best = rec.matches && rec.matches.length ? rec.matches[0] : null;
  if (rec.label !== "unknown") return best ? `${rec.label} ${best.similarity.toFixed(2)}` : rec.label;
  return rec.reason ? `unknown (${rec.reason})` : "unknown";
}

/**
 * Draw every face of `faces` (recognitions as the API answers them) on `ctx`, whose
 * canvas has the image's own pixel size. Line width and font grow with the image so
 * that labels stay readable once the canvas is scaled down to the page.
 */
export function drawFaces(ctx, faces, { numbered = false } = {}) {
  const { width, height } = ctx.canvas;
  const unit = Math.max(1, Math.max(width, height) / 450);
  const font = Math.round(13 * unit);
  ctx.lineWidth = 2 * unit;
  ctx.font = `600 ${font}px system-ui, sans-serif`;
  ctx.textBaseline = "top";
  faces.forEach((rec, i) => {
    const b = rec.face.box;
    const colour = rec.label === "unknown" ? UNKNOWN : KNOWN;
    ctx.strokeStyle = colour;
    ctx.strokeRect(b.x1, b.y1, b.x2 - b.x1, b.y2 - b.y1);
    const name = rec.label === "unknown" ? "unknown" : rec.label;
    const text = numbered ? `${i + 1}. ${name}` : name;
    const pad = 3 * unit;
    const w = ctx.measureText(text).width + 2 * pad;
    const h = font + 2 * pad;
    const x = Math.min(Math.max(0, b.x1 - ctx.lineWidth / 2), Math.max(0, width - w));
    let y = b.y1 - h;
    if (y < 0) y = Math.min(b.y2, height - h);
    ctx.fillStyle = colour;
    ctx.fillRect(x, y, w, h);
    ctx.fillStyle = "#111";
    ctx.fillText(text, x + pad, y + pad);
  });
}

/** Fill `el` with the operating point: threshold, where it comes from, people, FAR. */
export function showOperatingPoint(el, op) {
  if (!op) {
    el.hidden = true;
    return;
  }
  const parts = [
    ["threshold", Number(op.threshold).toFixed(3)],
    ["source", op.source],
    ["people", String(op.people)],
    ["false-alarm rate", op.far == null ? "—" : String(op.far)],
  ];
  const dl = document.createElement("dl");
  for (const [k, v] of parts) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    div.append(dt, dd);
    dl.append(div);
  }
  const title = document.createElement("span");
  title.className = "op-title";
  title.textContent = "Operating point";
  el.replaceChildren(title, dl);
  if (op.note) {
    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = op.note;
    el.append(note);
  }
  el.dataset.threshold = String(op.threshold);
  el.hidden = false;
}
