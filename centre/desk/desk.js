// The centre's desk: every site's open tickets, nearest breach first, with incidents, sites,
// one ticket's detail and the dispatch board, the complaints and the spare parts. Times come from the API in UTC and are shown
// in the browser's local time, which the header names. Countdowns run against the server's
// clock (`to_breach_s` at the moment of the answer), not the browser's.
"use strict";

const REFRESH_MS = 15000;
const SOON_S = 900; // less than this to a breach is shown as urgent
const MOVES = { open: ["ack"], acknowledged: ["dispatch", "resolve"], dispatched: ["arrive"], on_site: ["resolve"], resolved: ["close"] };
const state = { token: sessionStorage.getItem("alarmgw-desk-token"), me: null, tickets: [], fetchedAt: 0, chosen: null, at: null, timer: null, ticker: null };

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

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text != null) node.textContent = text;
  return node;
}

// --- time -------------------------------------------------------------------------------

function zoneLabel() {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
  const off = -new Date().getTimezoneOffset();
  const sign = off >= 0 ? "+" : "-";
  const hh = String(Math.floor(Math.abs(off) / 60)).padStart(2, "0");
  const mm = String(Math.abs(off) % 60).padStart(2, "0");
  return `${zone}, UTC${sign}${hh}:${mm}`;
}

function local(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function span(seconds) {
  const s = Math.abs(Math.round(seconds));
  const text = s >= 86400 ? `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`
    : s >= 3600 ? `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`
    : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return seconds < 0 ? `${text} late` : text;
}

function elapsed() {
  return (Date.now() - state.fetchedAt) / 1000;
}

// --- the API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

const RETRIES_AFTER_429 = 3; // the desk's rate bound: wait as it says, then ask again

async function api(path, options = {}) {
  const headers = { ...(state.token ? { Authorization: `Bearer ${state.token}` } : {}), ...(options.body ? { "Content-Type": "application/json" } : {}) };
  let res = await fetch(path, { ...options, headers });
  for (let i = 0; res.status === 429 && i < RETRIES_AFTER_429; i++) {
    const wait = Math.min(5, Math.max(0.2, Number(res.headers.get("Retry-After")) || 1));
    await new Promise((ok) => setTimeout(ok, wait * 1000));
    res = await fetch(path, { ...options, headers });
  }
  const body = await res.json().catch(() => ({}));
  if (res.status === 401 && path !== "/api/login") {
    signedOut("Your login has ended; log in again.");
    throw new ApiError(401, "not logged in");
  }
  if (!res.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
    throw new ApiError(res.status, detail || `HTTP ${res.status}`);
  }
  return body;
}

function signedOut(message) {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem("alarmgw-desk-token");
  clearInterval(state.timer);
  clearInterval(state.ticker);
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("status").textContent = "not signed in";
  $("who").textContent = "";
}

async function logIn(event) {
  event.preventDefault();
  try {
    const made = await api("/api/login", { method: "POST", body: JSON.stringify({ name: $("login-name").value, password: $("login-password").value }) });
    state.token = made.token;
    sessionStorage.setItem("alarmgw-desk-token", made.token);
    $("login-password").value = "";
    await start();
  } catch (e) {
    $("login-error").textContent = e.message;
  }
}

async function logOut() {
  try { await api("/api/logout", { method: "POST" }); } catch (e) { /* ended anyway */ }
  signedOut("");
}

async function start() {
  state.me = await api("/api/me");
  $("who").textContent = `${state.me.name} (${state.me.role})`;
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  await refresh();
  clearInterval(state.timer);
  clearInterval(state.ticker);
  state.timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  state.ticker = setInterval(tick, 1000);
}

async function refresh() {
  await Promise.all([loadTickets(), loadIncidents(), loadSites(), loadComplaints(), loadParts(), loadPlans()]);
  $("status").textContent = `as of ${local(state.at)}`;
  if (state.chosen) await openTicket(state.chosen.site, state.chosen.ref, false);
}

// --- tickets ----------------------------------------------------------------------------

function filterQuery() {
  const q = new URLSearchParams();
  for (const name of ["site", "area", "fault", "state", "engineer"]) {
    const v = $(`f-${name}`).value.trim();
    if (v) q.set(name, v);
  }
  return q.toString();
}

async function loadTickets() {
  const q = filterQuery();
  const body = await api(`/api/tickets${q ? `?${q}` : ""}`);
  state.tickets = body.tickets;
  state.fetchedAt = Date.now();
  state.at = body.at; // the centre's clock
  const rows = body.tickets.map((t) => {
    const plan = t.plan ? `${t.plan.engineer} (${local(t.plan.planned_arrival)})` : "";
    const tr = el("tr", { "data-key": `${t.site}/${t.ref}` },
      el("td", {}, t.site), el("td", {}, t.ref), el("td", {}, t.fault), el("td", {}, t.device),
      el("td", {}, t.area || "-"), el("td", {}, t.state, partOut(t)),
      el("td", { class: "clock", "data-breach": t.to_breach_s == null ? "" : String(t.to_breach_s) }),
      el("td", { class: t.plan && t.plan.margin_s < 0 ? "late" : "" }, plan));
    tr.addEventListener("click", () => openTicket(t.site, t.ref, true));
    if (state.chosen && state.chosen.site === t.site && state.chosen.ref === t.ref) tr.classList.add("chosen");
    return tr;
  });
  $("tickets").tBodies[0].replaceChildren(...rows);
  $("no-tickets").hidden = rows.length > 0;
  $("ticket-count").textContent = body.total > rows.length ? `(${rows.length} of ${body.total})` : `(${body.total})`;
  tick();
}

function partOut(t) {
  return t.part && t.part.out ? el("span", { class: "part-out", title: t.part.why }, "part out") : "";
}

function tick() {
  for (const td of document.querySelectorAll("td[data-breach]")) {
    if (td.dataset.breach === "") { td.textContent = "-"; continue; }
    const left = Number(td.dataset.breach) - elapsed();
    td.textContent = span(left);
    td.className = `clock ${left < 0 ? "breached" : left < SOON_S ? "soon" : "running"}`;
  }
}

// --- incidents and sites ----------------------------------------------------------------

async function loadIncidents() {
  const body = await api("/api/incidents");
  $("incidents").replaceChildren(...body.incidents.map((i) => el("li", { title: `since ${local(i.first_opened)}` }, i.line)));
  $("incident-count").textContent = `(${body.incidents.length}; ${body.singles} tickets on their own)`;
}

async function loadSites() {
  const body = await api("/api/sites");
  $("sites").tBodies[0].replaceChildren(...body.sites.map((s) => {
    const status = s.dark ? "dark" : s.status;
    return el("tr", { "data-site": s.site },
      el("td", {}, s.site), el("td", {}, s.area || "-"), el("td", { class: status }, status),
      el("td", {}, local(s.last_heard_at)), el("td", {}, s.devices_in_fault), el("td", {}, s.open_tickets));
  }));
  $("site-count").textContent = `(${body.total})`;
}

// --- complaints ---------------------------------------------------------------------------

function complaintClock(c) {
  const text = c.state === "running" ? `${span(c.remaining_s)} left` : c.state;
  return el("td", { class: `clock ${c.state}` }, text);
}

const complaintNotes = {};

async function loadComplaints() {
  const body = await api("/api/complaints");
  const may = state.me.may.includes("move");
  $("complaints").tBodies[0].replaceChildren(...body.complaints.map((c) => {
    const next = c.acknowledged_at ? "resolve" : "acknowledge";
    const act = el("td", {});
    if (may) {
      // What is being typed outlives the refresh that redraws the table.
      const note = el("input", { type: "text", size: "16", placeholder: next === "resolve" ? "how it was resolved" : "note", "data-complaint-note": c.id, value: complaintNotes[c.id] || "" });
      note.addEventListener("input", () => { complaintNotes[c.id] = note.value; });
      const b = el("button", { type: "button", "data-complaint-step": next }, next);
      b.addEventListener("click", () => complaintStep(c.id, next, note.value));
      act.append(note, b);
    }
    return el("tr", { "data-complaint": c.id },
      el("td", {}, c.id), el("td", {}, c.site), el("td", {}, c.customer), el("td", {}, c.channel.replace("_", " ")),
      el("td", {}, c.text, c.tickets.length ? el("div", { class: "muted" }, `tickets ${c.tickets.join(", ")}`) : ""),
      complaintClock(c.clocks.acknowledge), complaintClock(c.clocks.resolve), act);
  }));
  $("complaint-count").textContent = `(${body.complaints.length})`;
  $("complain").hidden = !may;
}

async function complaintStep(id, step, note) {
  $("c-error").textContent = "";
  try {
    await api(`/api/complaints/${id}/${step}`, { method: "POST", body: JSON.stringify({ note }) });
    delete complaintNotes[id];
  } catch (e) {
    $("c-error").textContent = `complaint ${id}: ${e.message}`;
  }
  await loadComplaints();
}

async function complain(event) {
  event.preventDefault();
  $("c-error").textContent = "";
  const tickets = $("c-tickets").value.split(",").map((t) => t.trim()).filter(Boolean);
  const doc = { site: $("c-site").value.trim(), customer: $("c-customer").value.trim(), channel: $("c-channel").value, text: $("c-text").value.trim(), tickets };
  try {
    await api("/api/complaints", { method: "POST", body: JSON.stringify(doc) });
    $("complain").reset();
  } catch (e) {
    $("c-error").textContent = e.message;
  }
  await loadComplaints();
}

// --- spare parts ---------------------------------------------------------------------------

// --- maintenance and warranty across sites ---------------------------------------------------

async function loadPlans() {
  const body = await api("/api/plans?days=14&months=6");
  const states = { overdue: "breached", due: "running soon", done: "met", upcoming: "" };
  $("plan-visits").tBodies[0].replaceChildren(...body.visits.map((v) =>
    el("tr", { "data-visit": `${v.site}/${v.n}` },
      el("td", {}, v.site), el("td", {}, `${v.n} (${v.kind.replace("_", "-")})`),
      el("td", {}, `${v.opens} to ${v.closes}`), el("td", { class: states[v.state] || "" }, v.state))));
  const devices = new Map();
  for (const d of [...body.warranty_ending, ...body.end_of_life]) devices.set(`${d.site}/${d.device}`, d);
  $("plan-ending").tBodies[0].replaceChildren(...[...devices.entries()].map(([key, d]) =>
    el("tr", { "data-device": key },
      el("td", {}, d.site), el("td", {}, d.device), el("td", {}, d.kind), el("td", {}, d.warranty_until || "-"),
      el("td", { class: d.reached ? "breached" : "" }, d.end_of_life || "-"))));
  const overdue = body.visits.filter((v) => v.state === "overdue").length;
  $("plan-count").textContent = `(${body.visits.length} visits, ${overdue} overdue; ${body.warranty_ending.length} warranties ending, ${body.end_of_life.length} at their rated life)`;
}

async function loadParts() {
  const body = await api("/api/parts");
  $("parts").tBodies[0].replaceChildren(...body.depots.flatMap((d) => d.stock.map((s) =>
    el("tr", { "data-line": `${d.name}/${s.part}` },
      el("td", {}, d.default ? `${d.name} (default)` : d.name), el("td", {}, s.part), el("td", {}, s.on_hand),
      el("td", {}, s.reserved), el("td", { class: s.low ? "breached" : "" }, s.free), el("td", {}, s.low_at)))));
  $("parts-out").replaceChildren(...body.out.map((o) => {
    const li = el("li", { "data-key": `${o.site}/${o.ref}`, title: o.why }, `part out: ${o.site} ticket ${o.ref} (${o.state}) needs ${o.name}, none free at depot ${o.depot}`);
    li.addEventListener("click", () => openTicket(o.site, o.ref, true));
    return li;
  }));
  $("parts-count").textContent = `(${body.depots.length} depots, ${body.low.length} low, ${body.out.length} tickets waiting for a part)`;
  $("receive").hidden = !state.me.may.includes("move");
}

async function receive(event) {
  event.preventDefault();
  $("p-error").textContent = "";
  const depot = $("p-depot").value.trim();
  const doc = { part: $("p-part").value.trim(), quantity: Number($("p-quantity").value) };
  try {
    await api(`/api/parts/depots/${encodeURIComponent(depot)}/receipt`, { method: "POST", body: JSON.stringify(doc) });
    $("receive").reset();
  } catch (e) {
    $("p-error").textContent = e.message;
  }
  await refresh();
}

const BILLING = { true: "out of warranty: charged at cost", false: "in warranty: free" };

function showPart(t) {
  const p = t.part;
  const out = $("d-part");
  out.className = p && p.out ? "late" : "";
  const billing = p && p.use !== "consumed" && p.billable != null ? ` (${BILLING[p.billable]})` : "";
  out.textContent = p ? `${p.name}: ${p.why}${billing}` : "No part named by the diagnosis.";
  const box = $("d-part-actions");
  box.replaceChildren();
  if (!p || !["waiting", "reserved"].includes(p.use) || !state.me.may.includes("assign")) return;
  const b = el("button", { type: "button", "data-part-release": "1" }, "release the part");
  b.addEventListener("click", async () => {
    try {
      await api(`/api/tickets/${encodeURIComponent(t.site)}/${t.ref}/part/release`, { method: "POST", body: JSON.stringify({}) });
      $("d-error").textContent = "";
    } catch (e) {
      $("d-error").textContent = e.message;
    }
    await refresh();
  });
  box.append(b);
}

// --- one ticket -------------------------------------------------------------------------

async function openTicket(site, ref, fresh) {
  state.chosen = { site, ref };
  if (fresh) $("d-error").textContent = "";
  for (const tr of $("tickets").tBodies[0].rows) tr.classList.toggle("chosen", tr.dataset.key === `${site}/${ref}`);
  const t = await api(`/api/tickets/${encodeURIComponent(site)}/${encodeURIComponent(ref)}`);
  $("detail").hidden = false;
  $("detail").dataset.key = `${site}/${ref}`;
  $("d-title").textContent = `${t.title || t.fault} — ${site} ticket ${ref}`;
  $("d-where").textContent = `${t.device} (${t.device_kind}) · ${t.location || "-"} · ${t.area || "-"} · ${t.state} · opened ${local(t.opened_at)}`;
  const clocks = ["response", "arrival", "repair", "downtime"].filter((n) => t.clocks[n]).map((n) => [n, t.clocks[n]]);
  $("d-clocks").tBodies[0].replaceChildren(...clocks.map(([name, c]) =>
    el("tr", {}, el("td", {}, name), el("td", {}, local(c.due)), el("td", { class: c.state }, c.state), el("td", { class: "clock" }, span(c.remaining_s)))));
  const dl = $("d-diagnosis");
  dl.replaceChildren();
  const diagnosis = t.diagnosis || (t.cause ? { cause: t.cause } : null);
  if (!diagnosis) dl.append(el("dt", {}, "-"), el("dd", { class: "muted" }, "none given"));
  else for (const [k, v] of Object.entries(diagnosis)) dl.append(el("dt", {}, k), el("dd", {}, typeof v === "object" ? JSON.stringify(v) : v));
  $("d-chart").replaceChildren(chart(t.trend.series));
  $("d-trend-source").textContent = t.trend.sources.length ? `from: ${t.trend.sources.join(", ")}` : "no readings kept for this ticket";
  $("d-history").replaceChildren(...t.history.map((h) =>
    el("li", {}, `${local(h.at)} ${h.action}${h.by ? ` by ${h.by}` : ""}${h.state && h.state !== h.action ? ` (${h.state})` : ""}${h.note ? `: ${h.note}` : ""}`)));
  showMoves(t);
  showPart(t);
  showPlan(t);
}

function showMoves(t) {
  const box = $("d-moves");
  box.replaceChildren();
  if (!state.me.may.includes("move")) return;
  for (const action of MOVES[t.state] || []) {
    const b = el("button", { type: "button", "data-move": action }, action);
    b.addEventListener("click", () => move(t, action));
    box.append(b);
  }
}

async function move(t, action) {
  try {
    const r = await api(`/api/tickets/${encodeURIComponent(t.site)}/${t.ref}/move`, { method: "POST", body: JSON.stringify({ action }) });
    if (r.ticket) await Promise.all([openTicket(t.site, t.ref, false), loadTickets()]); // the centre's own: moved already
    $("d-error").textContent = r.detail;
  } catch (e) {
    $("d-error").textContent = e.message;
  }
}

function showPlan(t) {
  const p = t.plan;
  const out = $("d-plan");
  out.className = p && p.margin_s < 0 ? "late" : "";
  if (!p) out.textContent = "No engineer assigned.";
  else {
    const against = p.margin_s == null ? "" : p.margin_s >= 0 ? `, ${span(p.margin_s)} before the arrival clock's due time` : `, after the arrival clock's due time (${span(p.margin_s)})`;
    out.textContent = `${p.engineer} planned at ${local(p.planned_arrival)}${against}; assigned by ${p.assigned_by} at ${local(p.assigned_at)}.`;
  }
  $("assign").hidden = !state.me.may.includes("assign");
}

async function assign(event) {
  event.preventDefault();
  const { site, ref } = state.chosen;
  const planned = new Date($("a-arrival").value); // datetime-local: the browser's local time
  try {
    if (Number.isNaN(planned.getTime())) throw new Error("give the planned arrival");
    await api(`/api/tickets/${encodeURIComponent(site)}/${ref}/assign`, {
      method: "POST", body: JSON.stringify({ engineer: $("a-engineer").value.trim(), planned_arrival: planned.toISOString() }),
    });
    $("d-error").textContent = "";
    await Promise.all([loadTickets(), openTicket(site, ref, false)]);
  } catch (e) {
    $("d-error").textContent = e.message;
  }
}

// --- the chart: battery (left scale) and signal (right scale) over time ------------------

function chart(series) {
  const W = 360, H = 130, L = 40, R = 40, T = 10, B = 20;
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
  const battery = series.battery_v || series.battery_pct || [];
  const signal = series.rssi_dbm || [];
  const all = [...battery, ...signal].map(([at]) => Date.parse(at));
  if (!all.length) {
    root.append(svg("text", { x: W / 2 - 50, y: H / 2 }, "no readings kept"));
    return root;
  }
  const t0 = Math.min(...all), t1 = Math.max(...all);
  const x = (at) => L + (t1 === t0 ? (W - L - R) / 2 : ((Date.parse(at) - t0) / (t1 - t0)) * (W - L - R));
  const line = (points, cls, side, unit) => {
    if (!points.length) return;
    const vs = points.map(([, v]) => v);
    let lo = Math.min(...vs), hi = Math.max(...vs);
    if (hi === lo) { lo -= 1; hi += 1; }
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    const d = points.map(([at, v], i) => `${i ? "L" : "M"}${x(at).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    root.append(svg("path", { class: cls, d, "data-series": cls }));
    for (const [at, v] of points) root.append(svg("circle", { cx: x(at).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: cls }));
    const tx = side === "left" ? 2 : W - R + 4;
    root.append(svg("text", { x: tx, y: T + 8 }, `${hi}${unit}`), svg("text", { x: tx, y: H - B }, `${lo}${unit}`));
  };
  line(battery, "battery", "left", series.battery_v ? " V" : " %");
  line(signal, "signal", "right", " dBm");
  root.append(svg("text", { x: L, y: H - 4 }, local(new Date(t0).toISOString())));
  root.append(svg("text", { x: W - R - 70, y: H - 4 }, local(new Date(t1).toISOString())));
  return root;
}

// --- wiring -----------------------------------------------------------------------------

$("tz").textContent = `times in local time (${zoneLabel()})`;
for (const s of document.querySelectorAll(".tzname")) s.textContent = zoneLabel();
$("login").addEventListener("submit", logIn);
$("logout").addEventListener("click", logOut);
$("assign").addEventListener("submit", assign);
$("complain").addEventListener("submit", complain);
$("receive").addEventListener("submit", receive);
$("filters").addEventListener("submit", (e) => { e.preventDefault(); loadTickets().catch((err) => { $("status").textContent = err.message; }); });
$("f-area").addEventListener("change", () => loadTickets().catch(() => {}));
$("f-state").addEventListener("change", () => loadTickets().catch(() => {}));
$("f-clear").addEventListener("click", () => {
  for (const name of ["site", "area", "fault", "state", "engineer"]) $(`f-${name}`).value = "";
  loadTickets().catch(() => {});
});
if (state.token) start().catch(() => signedOut(""));
