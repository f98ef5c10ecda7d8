// The report viewer (framed by the page): it gets a report's HTML from the page by
// postMessage and shows it in a fully sandboxed frame (no script, opaque origin) from a
// blob: URL. It exists because a blob: document inherits the CSP of the document that
// made it: made here, the report gets this viewer's CSP (inline styles and data: images
// allowed, as faceprint eval's reports need), while the page keeps style-src 'self'.

const frame = document.getElementById("report");
let url = null;

window.addEventListener("message", (ev) => {
  if (ev.origin !== window.location.origin || ev.source !== window.parent) return;
  const { html, name } = ev.data || {};
  if (typeof html !== "string") return;
  if (url) URL.revokeObjectURL(url);
  url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
  frame.title = `Evaluation report ${name}`;
  frame.src = url;
});
