// The page's start: sign in and out, the key's role (what it may do), and the sections
// (#identify, #people, #streams, #reports; the hash never carries the key).

import { allows, api, clearMessages, forgetKey, guard, showError, storedKey, storeKey, whenUnauthorized } from "./api.js";
import { setupIdentify } from "./identify.js";
import { setupPeople } from "./people.js";
import { setupReports } from "./reports.js";
import { setupStreams } from "./streams.js";

const $ = (id) => document.getElementById(id);

const session = {
  name: null,
  role: null,
  allows(needed) {
    return this.role !== null && allows(this.role, needed);
  },
};

const views = {
  identify: setupIdentify(),
  people: setupPeople(session),
  streams: setupStreams(session),
  reports: setupReports(),
};
let current = null;

function applyRole() {
  for (const el of document.querySelectorAll("[data-needs]")) {
    const ok = session.allows(el.dataset.needs);
    el.disabled = !ok;
    el.classList.toggle("denied", !ok);
  }
}

function showOnly(sectionId) {
  for (const s of document.querySelectorAll("main > .view")) s.hidden = s.id !== sectionId;
}

function route({ focus = false } = {}) {
  if (session.role === null) {
    showOnly("view-signin");
    return;
  }
  const wanted = location.hash.slice(1);
  const name = Object.hasOwn(views, wanted) ? wanted : "identify";
  if (current && current !== name) views[current].leave();
  current = name;
  showOnly(`view-${name}`);
  for (const a of $("tabs").querySelectorAll("a")) {
    if (a.getAttribute("href") === `#${name}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (focus) {
    const heading = document.querySelector(`#view-${name} h2`);
    heading.tabIndex = -1;
    heading.focus();
  }
  const enter = views[name].enter;
  if (enter) guard(enter, name[0].toUpperCase() + name.slice(1))();
}

async function signIn(key) {
  const me = await api("/v1/whoami", { key });
  storeKey(key);
  session.name = me.name;
  session.role = me.role;
  $("who-name").textContent = me.name;
  $("who-role").textContent = me.role;
  $("who").hidden = false;
  $("tabs").hidden = false;
  applyRole();
  route();
}

function signOut() {
  forgetKey();
  if (current) views[current].leave();
  for (const v of Object.values(views)) v.reset();
  current = null;
  session.name = null;
  session.role = null;
  $("who").hidden = true;
  $("tabs").hidden = true;
  applyRole();
  route();
  $("signin-key").focus();
}

whenUnauthorized(() => signOut());

$("signin-form").addEventListener(
  "submit",
  guard(async (ev) => {
    ev.preventDefault();
    const input = $("signin-key");
    const key = input.value.trim();
    if (!key) return;
    await signIn(key);
    input.value = "";
    clearMessages();
  }, "Sign in"),
);

$("sign-out").addEventListener("click", () => {
  signOut();
  clearMessages();
});

window.addEventListener("hashchange", () => route({ focus: true }));

const saved = storedKey();
if (saved) {
  signIn(saved).catch((err) => {
    forgetKey();
    showError(err, "Sign in with the saved key");
    route();
  });
} else {
  route();
}
