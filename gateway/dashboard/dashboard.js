// The gateway's dashboard: reads the HTTP API with the token the user gives, refreshes every
// few seconds and counts every service clock down each second against the gateway's clock.
"use strict";

const REFRESH_MS = 5000;
const SOON_S = 600; // a running clock with less than this left is shown as urgent
const CLOCKS = ["response", "arrival", "repair", "downtime"]; // downtime: once the device went away during its repair
const state = { token: null, role: null, offsetMs: 0, tickets: [], ticketsKey: "", notes: {}, timer: null, ticker: null, lastOk: null, unreachable: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

// --- the token --------------------------------------------------------------------------

function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("alarmgw-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("alarmgw-token");
}

function askToken(message) {
  state.token = null;
  sessionStorage.removeItem("alarmgw-token");
  clearInterval(state.timer);
  $("main").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("status").textContent = "not signed in";
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.body ? { "Content-Type": "application/json" } : {}) };
  const res = await fetch(path, { ...options, headers });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) {
    askToken("That token is not known to this gateway.");
    throw new ApiError(401, "not signed in");
  }
  if (!res.ok) throw new ApiError(res.status, body.detail || `HTTP ${res.status}`);
  return body;
}

// --- time -------------------------------------------------------------------------------

const gatewayNow = () => Date.now() + state.offsetMs;

function span(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const two = (n) => String(n).padStart(2, "0");
  if (d > 0) return `${d}d ${h}h ${two(m)}m`;
  if (h > 0) return `${h}h ${two(m)}m ${two(r)}s`;
  return `${two(m)}:${two(r)}`;
}

function ago(iso) {
  if (!iso) return "never";
  const s = (gatewayNow() - Date.parse(iso)) / 1000;
  return s < 1 ? "just now" : `${span(s)} ago`;
}

// One clock of one ticket, as text and a class, at the gateway's present moment.
function clockView(c) {
  if (!c) return { text: "—", cls: "not_needed", title: "" };
  const due = Date.parse(c.due);
  const title = `due ${new Date(due).toISOString().replace(".000", "")}${c.provisional ? " (provisional)" : ""}`;
  if (c.state === "met") return { text: "met", cls: "met", title };
  if (c.state === "not_needed") return { text: "not needed", cls: "not_needed", title };
  if (c.stopped_at) return { text: `late by ${span((Date.parse(c.stopped_at) - due) / 1000)}`, cls: "breached", title };
  const left = (due - gatewayNow()) / 1000;
  const mark = c.provisional ? "~" : "";
  if (left <= 0) return { text: `overdue ${span(-left)}`, cls: "breached", title };
  return { text: `${mark}${span(left)} left`, cls: left < SOON_S ? "running soon" : "running", title };
}

// --- rendering --------------------------------------------------------------------------

function renderTickets() {
  const body = $("tickets").tBodies[0];
  body.replaceChildren();
  const engineer = state.role === "engineer";
  for (const t of state.tickets) {
    const actions = el("td", { class: "actions-col" });
    if (engineer && t.actions.length) {
      const note = el("input", { type: "text", placeholder: "note", value: state.notes[t.id] || "", "data-note": t.id });
      note.addEventListener("input", () => { state.notes[t.id] = note.value; });
      actions.append(note);
      for (const a of t.actions) {
        const b = el("button", { type: "button", "data-action": a }, a);
        b.addEventListener("click", () => move(t.id, a, b));
        actions.append(b);
      }
    }
    if (engineer) {
      // The failure record's "measures taken by the user", from the note field.
      const b = el("button", { type: "button", "data-action": "user_action", title: "record the note as what the customer did" }, "customer did");
      b.addEventListener("click", () => userAction(t.id, b));
      actions.append(b);
    }
    if (engineer && (t.state === "on_site" || t.out_of_service)) {
      // Taking the device out for the repair starts its downtime clock; putting it back ends it at its next reading.
      const svc = t.out_of_service ? "in_service" : "out_of_service";
      const s = el("button", { type: "button", "data-action": svc, title: t.out_of_service ? "the device is back: its next reading ends the downtime" : "the device is out for the repair: its downtime runs" }, svc.replace(/_/g, " "));
      s.addEventListener("click", () => move(t.id, svc, s, false));
      actions.append(s);
    }
    const clocks = CLOCKS.map((name) => el("td", { class: "clock", "data-clock": name }));
    const lost = t.casualties.length ? el("div", { class: "muted" }, `lost behind it: ${t.casualties.join(", ")}`) : "";
    body.append(
      el(
        "tr",
        { "data-ticket": t.id },
        el("td", { class: "num" }, t.id),
        el("td", {}, t.device, el("div", { class: "muted" }, t.location || "")),
        el("td", {}, t.title, lost, t.fault_active ? "" : el("div", { class: "muted" }, "restored"),
          t.user_action ? el("div", { class: "muted", "data-user-action": t.id }, `customer: ${t.user_action}`) : "",
          t.out_of_service ? el("div", { class: "muted", "data-out-of-service": t.id }, "device out of service") : ""),
        el("td", { "data-state": t.state }, t.state.replace("_", " ")),
        ...clocks,
        actions,
      ),
    );
  }
  $("ticket-count").textContent = `(${state.tickets.length})`;
  $("no-tickets").hidden = state.tickets.length > 0;
  tick();
}

function tick() {
  for (const row of $("tickets").tBodies[0].rows) {
    const t = state.tickets.find((x) => String(x.id) === row.dataset.ticket);
    if (!t) continue;
    for (const cell of row.querySelectorAll("td[data-clock]")) {
      const v = clockView(t.clocks[cell.dataset.clock]);
      cell.textContent = v.text;
      cell.className = `clock ${v.cls}`;
      cell.title = v.title;
    }
  }
  if (!state.lastOk) return;
  const age = Date.now() - state.lastOk;
  const status = $("status");
  status.classList.toggle("stale", age > 3 * REFRESH_MS); // what is shown may no longer be true
  if (state.unreachable) status.textContent = `gateway unreachable (${state.unreachable}); last heard ${span(age / 1000)} ago`;
  else status.textContent = `gateway clock ${new Date(gatewayNow()).toISOString().slice(11, 19)} UTC · updated ${Math.round(age / 1000)} s ago`;
}

function renderFaults(faults) {
  const body = $("faults").tBodies[0];
  body.replaceChildren(
    ...faults.map((f) =>
      el(
        "tr",
        { "data-fault": `${f.device}/${f.fault}` },
        el("td", {}, f.device),
        el("td", {}, f.title),
        el("td", {}, f.location),
        el("td", {}, f.since ? ago(f.since) : "—"),
        el("td", {}, f.ticket == null ? "—" : f.behind ? `#${f.ticket} (behind ${f.behind})` : `#${f.ticket}`),
      ),
    ),
  );
  $("fault-count").textContent = `(${faults.length})`;
  $("no-faults").hidden = faults.length > 0;
}

// When the device itself was last heard: a host reports how long ago it heard each radio device.
function lastHeard(d) {
  if (!d.latest) return "never";
  const age = d.latest.values.link_age_s;
  if (typeof age !== "number") return ago(d.latest.at);
  return ago(new Date(Date.parse(d.latest.at) - age * 1000).toISOString());
}

function battery(d) {
  const v = d.latest ? d.latest.values : {};
  const low = v.battery_low === true || d.faults.includes("low_battery");
  let text = "—";
  if (typeof v.battery_v === "number") text = `${v.battery_v.toFixed(2)} V`;
  else if (typeof v.battery_pct === "number") text = `${Math.round(v.battery_pct)} %`;
  return el("td", { class: low ? "num low" : "num", "data-battery": d.id }, text);
}

function signal(d) {
  const v = d.latest ? d.latest.values : {};
  let text = "—";
  if (typeof v.rssi_dbm === "number") text = `${Math.round(v.rssi_dbm)} dBm`;
  else if (typeof v.link_quality === "number") text = `LQI ${Math.round(v.link_quality)}`;
  const weak = d.faults.includes("weak_signal") || d.faults.includes("link_lost");
  return el("td", { class: weak ? "num low" : "num", "data-signal": d.id }, text);
}

// Buses, then each host with its repeaters (and what reaches the host through each), then
// what talks to the host directly.
function deviceOrder(devices) {
  const byParent = {};
  for (const d of devices) (byParent[d.parent || ""] ||= []).push(d);
  const out = [], seen = new Set();
  const put = (d, level) => { if (!seen.has(d.id)) { seen.add(d.id); out.push([d, level]); } };
  for (const d of devices) if (d.kind === "bus") put(d, "host");
  for (const h of devices.filter((d) => d.kind === "host")) {
    put(h, "host");
    const under = (byParent[h.id] || []).filter((d) => d.kind !== "host");
    for (const r of under.filter((d) => d.kind === "repeater")) {
      put(r, "repeater");
      for (const c of byParent[r.id] || []) put(c, "child");
    }
    for (const d of under.filter((d) => d.kind !== "repeater")) put(d, "repeater");
  }
  for (const d of devices) put(d, "repeater");
  return out;
}

// The asset register: the last day in warranty (after it parts are charged) and the rated life.
function warranty(d) {
  if (!d.warranty_until) return el("td", { class: "muted" }, "-");
  const text = d.in_warranty ? `until ${d.warranty_until}` : `ended ${d.warranty_until}: parts at cost`;
  return el("td", { class: d.in_warranty ? "" : "low", "data-warranty": d.id }, text, el("div", { class: "muted" }, `rated life to ${d.end_of_life}`));
}

function renderDevices(devices) {
  const body = $("devices").tBodies[0];
  body.replaceChildren(
    ...deviceOrder(devices).map(([d, level]) =>
      el(
        "tr",
        { class: level, "data-device": d.id },
        el("td", {}, d.id),
        el("td", {}, d.kind.replace("_", " ")),
        el("td", {}, d.location),
        battery(d),
        signal(d),
        el("td", {}, ...d.faults.map((f) => el("span", { class: "badge" }, f))),
        el("td", { class: "muted" }, lastHeard(d)),
        warranty(d),
      ),
    ),
  );
  $("device-count").textContent = `(${devices.length})`;
}

// --- loading and acting -----------------------------------------------------------------

async function refresh() {
  try {
    const [site, devices, faults, tickets, visit] = await Promise.all([
      api("/api/site"), api("/api/devices"), api("/api/faults"), api("/api/tickets"), api("/api/maintenance"),
    ]);
    renderVisit(visit);
    state.offsetMs = Date.parse(site.at) - Date.now();
    state.lastOk = Date.now();
    state.unreachable = null;
    $("site").textContent = site.name ? `${site.name} (${site.site})` : site.site;
    document.title = `alarmgw · ${site.site}`;
    renderDevices(devices);
    renderFaults(faults);
    state.tickets = tickets;
    const key = JSON.stringify(tickets.map((t) => [t.id, t.version, t.state, t.fault_active, t.actions, t.casualties, Object.values(t.clocks).map((c) => [c.due, c.state, c.stopped_at])]));
    if (key !== state.ticketsKey) { state.ticketsKey = key; renderTickets(); } else tick();
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  } catch (e) {
    if (e.status !== 401) { state.unreachable = e.message; tick(); }
  }
}

function renderVisit(m) {
  const running = m.running;
  const engineer = state.role === "engineer";
  if (running) {
    const heard = Object.keys(running.findings).length;
    $("visit").textContent = `visit ${running.visit} by ${running.started_by} since ${running.started_at.slice(0, 16).replace("T", " ")} UTC, ends by ${running.ends_by.slice(11, 16)} UTC; ${heard} devices heard so far. Covers opened are findings, not tickets.`;
  } else {
    const last = m.done[m.done.length - 1];
    $("visit").textContent = last ? `no visit running; the last: ${last.visit}, ${last.ended} ${String(last.finished_at).slice(0, 10)} by ${last.finished_by}` : "no visit running";
  }
  $("visit-start").hidden = !engineer || Boolean(running);
  $("visit-finish").hidden = !engineer || !running;
}

function renderReport(report) {
  const c = report.counts;
  $("visit-counts").textContent = `visit ${report.visit}: ${c.tested} tested, ${c.untested} untested, ${c.failed} failed`;
  $("visit-report").tBodies[0].replaceChildren(
    ...report.devices.map((d) => el("tr", { "data-device": d.device, class: d.verdict }, el("td", {}, d.device), el("td", {}, d.kind), el("td", { "data-verdict": d.verdict }, d.verdict), el("td", {}, d.why.join("; ")))),
  );
  $("visit-report").hidden = false;
}

async function visitAction(action, button) {
  button.disabled = true;
  $("visit-error").textContent = "";
  try {
    const answer = await api(`/api/maintenance/${action}`, { method: "POST" });
    if (action === "finish") renderReport(answer);
  } catch (e) {
    $("visit-error").textContent = `${action} visit refused: ${e.message}`;
  }
  button.disabled = false;
  await refresh();
}

async function move(id, action, button, withNote = true) {
  button.disabled = true;
  $("action-error").textContent = "";
  try {
    const body = withNote ? JSON.stringify({ note: state.notes[id] || "" }) : undefined;
    await api(`/api/tickets/${id}/${action}`, { method: "POST", body });
    if (withNote) delete state.notes[id];
  } catch (e) {
    $("action-error").textContent = `ticket ${id}: ${action} refused: ${e.message}`;
  }
  button.disabled = false;
  await refresh();
}

async function userAction(id, button) {
  const text = (state.notes[id] || "").trim();
  $("action-error").textContent = "";
  if (!text) {
    $("action-error").textContent = `ticket ${id}: write what the customer did in the note first`;
    return;
  }
  button.disabled = true;
  try {
    await api(`/api/tickets/${id}/user_action`, { method: "POST", body: JSON.stringify({ text }) });
    delete state.notes[id];
  } catch (e) {
    $("action-error").textContent = `ticket ${id}: refused: ${e.message}`;
  }
  button.disabled = false;
  await refresh();
}

async function start() {
  state.token = takeToken();
  if (!state.token) return askToken("");
  try {
    const me = await api("/api/whoami");
    state.role = me.role;
    $("who").textContent = `${me.name} (${me.role})`;
  } catch (e) {
    if (e.status !== 401) $("status").textContent = `gateway unreachable: ${e.message}`;
    return;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  await refresh();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, REFRESH_MS);
  state.ticker ||= setInterval(tick, 1000);
}

$("visit-start").addEventListener("click", (ev) => visitAction("start", ev.currentTarget));
$("visit-finish").addEventListener("click", (ev) => visitAction("finish", ev.currentTarget));

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("alarmgw-token", $("token").value.trim());
  $("token").value = "";
  start();
});

start();
