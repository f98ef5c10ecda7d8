// Evaluation: the `faceprint eval` HTML reports of the operator's reports folder. A report
// is fetched here with the key (a frame's own request could not carry it) and handed to
// the report viewer (/static/report.html, framed below), which shows it in a fully
// sandboxed frame (no script, no same-origin access) from a blob: URL under its own CSP.

import { api, guard } from "./api.js";

const $ = (id) => document.getElementById(id);

function size(bytes) {
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MB`;
  if (bytes >= 1 << 10) return `${Math.round(bytes / (1 << 10))} kB`;
  return `${bytes} bytes`;
}

class Reports {
  async load() {
    const answer = await api("/v1/reports");
    const list = $("reports-list");
    list.replaceChildren(
      ...answer.reports.map((r) => {
        const li = document.createElement("li");
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = r.name;
        b.dataset.name = r.name;
        b.addEventListener("click", guard(() => this.show(r, b), "Report"));
        const meta = document.createElement("span");
        meta.className = "hint";
        const when = new Date(r.modified * 1000).toLocaleString();
        meta.textContent = ` ${size(r.bytes)} · ${when}`;
        li.append(b, meta);
        return li;
      }),
    );
    $("reports-empty").hidden = answer.reports.length > 0;
  }

  async viewer() {
    const frame = $("report-frame");
    if (frame.dataset.ready !== "1") {
      const loaded = new Promise((resolve) => frame.addEventListener("load", resolve, { once: true }));
      frame.src = "/static/report.html";
      await loaded;
      frame.dataset.ready = "1";
    }
    return frame;
  }

  async show(report, button) {
    const res = await api(`/v1/reports/${encodeURIComponent(report.name)}`, { raw: true });
    const html = await res.text();
    const frame = await this.viewer();
    frame.contentWindow.postMessage({ html, name: report.name }, window.location.origin);
    frame.title = `Evaluation report ${report.name}`;
    frame.hidden = false;
    for (const b of $("reports-list").querySelectorAll("button")) b.removeAttribute("aria-pressed");
    button.setAttribute("aria-pressed", "true");
  }

  clear() {
    const frame = $("report-frame");
    frame.hidden = true;
    frame.removeAttribute("src");
    delete frame.dataset.ready;
  }
}

export function setupReports() {
  const reports = new Reports();
  return {
    enter: () => reports.load(),
    leave: () => {},
    reset: () => {
      reports.clear();
      $("reports-list").replaceChildren();
    },
  };
}
