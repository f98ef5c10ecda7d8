// People: list and search, add a person with photos (files or webcam snapshots), add
// photos to someone, rename, delete after a confirmation.

import { api, guard, showError, showInfo } from "./api.js";
import { closeCamera, grabFrame, openCamera, toJpeg } from "./camera.js";

const PAGE = 100;
const $ = (id) => document.getElementById(id);

function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** A short account of an enrolment answer: added, duplicates, refused with reasons. */
function enrolSummary(report) {
  const parts = [];
  if (report.added?.length) parts.push(`${plural(report.added.length, "face")} added`);
  if (report.duplicates?.length) parts.push(`${plural(report.duplicates.length, "photo")} already enrolled`);
  if (report.refused?.length) {
    parts.push(`refused: ${report.refused.map((r) => `${r.image} (${r.reason})`).join("; ")}`);
  }
  return parts.join(", ");
}

async function enrol(id, photos) {
  const form = new FormData();
  photos.forEach((p) => form.append("image", p, p.name));
  return api(`/v1/people/${encodeURIComponent(id)}/faces`, { method: "POST", form });
}

class People {
  constructor(canEnrol) {
    this.canEnrol = canEnrol;
    this.query = "";
    this.shown = 0;
    this.snaps = [];
    this.snapStream = null;
    this.addTo = null;
    this.pendingDelete = null;
  }

  // ---- the list ----

  async load({ more = false } = {}) {
    const offset = more ? this.shown : 0;
    const q = this.query ? `&q=${encodeURIComponent(this.query)}` : "";
    const answer = await api(`/v1/people?limit=${PAGE}&offset=${offset}${q}`);
    const list = $("people-list");
    if (!more) list.replaceChildren();
    answer.people.forEach((p) => list.append(this.row(p)));
    this.shown = offset + answer.people.length;
    const total = answer.total;
    $("people-total").textContent = this.query
      ? `${plural(total, "person", "people")} match “${this.query}”.`
      : `${plural(total, "person", "people")} enrolled.`;
    $("people-more").hidden = this.shown >= total;
  }

  row(person) {
    const li = document.createElement("li");
    li.className = "person";
    li.dataset.id = person.id;
    li.dataset.name = person.name;
    const main = document.createElement("div");
    main.className = "info";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = person.name;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = plural(person.faces, "face");
    main.append(name, count);
    const actions = document.createElement("div");
    actions.className = "actions";
    const button = (text, cls, fn) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = text;
      b.className = cls;
      b.setAttribute("aria-label", `${text}: ${person.name}`);
      b.disabled = !this.canEnrol;
      b.addEventListener("click", guard(() => fn(li, person), text));
      actions.append(b);
      return b;
    };
    button("Add photos", "add", (row, p) => this.pickPhotos(p));
    button("Rename", "rename", (row, p) => this.startRename(row, p));
    button("Delete", "delete danger", (row, p) => this.askDelete(p));
    li.append(main, actions);
    return li;
  }

  pickPhotos(person) {
    this.addTo = person;
    const input = $("people-add-files");
    input.value = "";
    input.click();
  }

  async addPhotos(files) {
    const person = this.addTo;
    this.addTo = null;
    if (!person || !files.length) return;
    const report = await enrol(person.id, files);
    showInfo(`${person.name}: ${enrolSummary(report)}`);
    await this.load();
  }

  startRename(row, person) {
    const main = row.querySelector(".info");
    const form = document.createElement("form");
    form.className = "rename-form";
    const input = document.createElement("input");
    input.type = "text";
    input.required = true;
    input.maxLength = 200;
    input.value = person.name;
    input.setAttribute("aria-label", `New name for ${person.name}`);
    const save = document.createElement("button");
    save.type = "submit";
    save.className = "primary";
    save.textContent = "Save";
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    form.append(input, save, cancel);
    const restore = () => {
      form.replaceWith(main);
      row.querySelector("button.rename")?.focus();
    };
    cancel.addEventListener("click", restore);
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") restore();
    });
    form.addEventListener(
      "submit",
      guard(async (ev) => {
        ev.preventDefault();
        const name = input.value.trim();
        if (!name || name === person.name) {
          restore();
          return;
        }
        const updated = await api(`/v1/people/${encodeURIComponent(person.id)}`, {
          method: "PATCH",
          json: { name },
        });
        showInfo(`Renamed ${person.name} to ${updated.name}.`);
        await this.load();
      }, "Rename"),
    );
    main.replaceWith(form);
    input.focus();
    input.select();
  }

  askDelete(person) {
    this.pendingDelete = person;
    $("confirm-name").textContent = person.name;
    $("confirm-text").textContent =
      `This erases ${person.name} and all ${plural(person.faces, "enrolled face")} from the gallery. ` +
      "It cannot be undone.";
    $("confirm-delete").returnValue = "";
    $("confirm-delete").showModal();
  }

  async confirmed(answer) {
    const person = this.pendingDelete;
    this.pendingDelete = null;
    if (answer !== "delete" || !person) return;
    const out = await api(`/v1/people/${encodeURIComponent(person.id)}`, { method: "DELETE" });
    showInfo(`Deleted ${out.name}`, `${plural(out.removed_faces, "face")} erased.`);
    await this.load();
  }

  // ---- adding someone ----

  async openSnap() {
    if (this.snapStream) return;
    $("snap-take").disabled = true; // until the camera gives a picture: nothing to take yet
    $("snap-panel").hidden = false;
    try {
      this.snapStream = await openCamera($("snap-video"));
    } catch (err) {
      $("snap-panel").hidden = true;
      throw err;
    }
    $("snap-take").disabled = false;
    $("snap-take").focus();
  }

  closeSnap() {
    if (this.snapStream) closeCamera($("snap-video"), this.snapStream);
    this.snapStream = null;
    $("snap-take").disabled = true;
    $("snap-panel").hidden = true;
  }

  async takeSnap() {
    const canvas = grabFrame($("snap-video"), document.createElement("canvas"));
    const blob = await toJpeg(canvas, 0.92);
    const file = new File([blob], `snapshot-${this.snaps.length + 1}.jpg`, { type: "image/jpeg" });
    this.snaps.push(file);
    const li = document.createElement("li");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", file.name);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Remove";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    remove.addEventListener("click", () => {
      this.snaps = this.snaps.filter((f) => f !== file);
      li.remove();
    });
    li.append(canvas, remove);
    $("snap-list").append(li);
  }

  async addPerson() {
    const name = $("person-name").value.trim();
    const photos = [...$("person-files").files, ...this.snaps];
    if (!name) return;
    const button = $("person-submit");
    button.disabled = true;
    try {
      const person = await api("/v1/people", { method: "POST", json: { name } });
      let summary = "no photo yet: add some with “Add photos”";
      if (photos.length) {
        try {
          summary = enrolSummary(await enrol(person.id, photos));
        } catch (err) {
          // nothing could be enrolled: do not leave an empty person behind
          await api(`/v1/people/${encodeURIComponent(person.id)}`, { method: "DELETE" }).catch((e) =>
            showError(e, "Undoing the new person"),
          );
          throw err;
        }
      }
      showInfo(`Added ${person.name}`, summary);
      $("person-form").reset();
      this.snaps = [];
      $("snap-list").replaceChildren();
      this.closeSnap();
      await this.load();
    } finally {
      button.disabled = false;
    }
  }
}

export function setupPeople(session) {
  const people = new People(false);
  let timer = null;
  const search = () => {
    people.query = $("people-q").value.trim();
    return people.load();
  };
  $("people-search").addEventListener(
    "submit",
    guard(async (ev) => {
      ev.preventDefault();
      clearTimeout(timer);
      await search();
    }, "Search"),
  );
  $("people-q").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(guard(search, "Search"), 300);
  });
  $("people-more").addEventListener("click", guard(() => people.load({ more: true }), "People"));
  $("people-add-files").addEventListener(
    "change",
    guard(() => people.addPhotos([...$("people-add-files").files]), "Add photos"),
  );
  $("person-form").addEventListener(
    "submit",
    guard(async (ev) => {
      ev.preventDefault();
      await people.addPerson();
    }, "Add person"),
  );
  $("snap-open").addEventListener("click", guard(() => people.openSnap(), "Webcam"));
  $("snap-close").addEventListener("click", () => people.closeSnap());
  $("snap-take").addEventListener("click", guard(() => people.takeSnap(), "Snapshot"));
  $("confirm-delete").addEventListener(
    "close",
    guard(() => people.confirmed($("confirm-delete").returnValue), "Delete"),
  );
  return {
    enter: () => {
      people.canEnrol = session.allows("enrol");
      return people.load();
    },
    leave: () => people.closeSnap(),
    reset: () => {
      people.closeSnap();
      people.snaps = [];
      $("snap-list").replaceChildren();
      $("people-list").replaceChildren();
      $("people-total").textContent = "";
      $("person-form").reset();
      $("people-q").value = "";
      people.query = "";
    },
  };
}
