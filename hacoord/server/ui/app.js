// hacoord status page. Reads the members' API with the operator's token (kept in this tab's
// sessionStorage only) and follows the cluster through failovers by asking another member.
"use strict";

const TOKEN_KEY = "hacoord-token";
const MEMBER_POLL_MS = 400;     // every member's /readyz: who leads, terms, indexes
const DATA_POLL_MS = 1000;      // status, nodes, routing (when the revision moved), rebalance
const PROBE_TIMEOUT_MS = 1500;
const WATCH_SECONDS = 15;
const MAX_CHANGES = 100;
const MAX_CELLS = 2000;         // per resource; the rest is counted, not drawn
const MAX_TOTAL_CELLS = 10000;  // over every resource
// How long each read may take (a routing table is megabytes on a large cluster).
const READ_TIMEOUT_MS = {status: 3000, nodes: 10000, routing: 30000, rebalance: 15000, explain: 15000};
const BIG_ROUTING = 20000;      // partitions over which the routing table is read less often
const BIG_ROUTING_GAP_MS = 10000;
const HEALTH = ["healthy", "under_replicated", "leaderless", "unavailable"];

const view = {
  members: new Map(),   // api origin -> {id, url, answer, error}
  order: [],            // api origins in member-id order
  source: null,         // the origin data is read from
  revision: null,
  status: null,
  nodes: [],
  routing: null,
  rebalance: null,
  changes: [],
  since: null,
  explainOf: null,
};

// --- small helpers ---------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function fill(id, rows) {
  document.getElementById(id).replaceChildren(...rows);
}

function text(id, value) {
  document.getElementById(id).textContent = value;
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 60) return `${value.toFixed(1)} s`;
  if (value < 3600) return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
  return `${(value / 3600).toFixed(1)} h`;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

// One request to one member, bounded in time; JSON back, ApiError for an error answer.
async function request(origin, path, timeoutMs = PROBE_TIMEOUT_MS) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  try {
    const response = await fetch(origin + path, {headers, signal: controller.signal, cache: "no-store"});
    const body = await response.json().catch(() => null);
    if (!response.ok && !(path === "/readyz" && response.status === 503)) {
      throw new ApiError(response.status, body);
    }
    return body;
  } finally {
    clearTimeout(timer);
  }
}

// A read from the current source member; on a network failure the next reachable one is tried.
async function read(path, timeoutMs) {
  const tried = new Set();
  let last = null;
  for (let attempt = 0; attempt < Math.max(1, view.order.length); attempt += 1) {
    const origin = pickSource(tried);
    if (origin === null) break;
    tried.add(origin);
    try {
      return await request(origin, path, timeoutMs);
    } catch (error) {
      if (error instanceof ApiError && error.status !== 503) throw error;
      last = error;
      view.source = null;
    }
  }
  throw last || new Error("no member answers");
}

// The member to read from: the current one while it answers, else a ready one (this page's own
// member first), else any that answered lately.
function pickSource(tried = new Set()) {
  const usable = (origin) => !tried.has(origin) && !view.members.get(origin)?.error;
  if (view.source && usable(view.source)) return view.source;
  const ready = view.order.filter((o) => usable(o) && view.members.get(o)?.answer?.ready);
  const pick = (ready.includes(location.origin) ? location.origin : ready[0])
    ?? view.order.find(usable) ?? (tried.has(location.origin) ? null : location.origin);
  view.source = pick;
  return pick;
}

// --- authentication ----------------------------------------------------------------------------

function askForToken(message) {
  const dialog = document.getElementById("login");
  text("login-error", message || "");
  document.getElementById("forget").hidden = true;
  if (!dialog.open) dialog.showModal();
}

function setUpLogin() {
  document.getElementById("login-form").addEventListener("submit", () => {
    const value = document.getElementById("token").value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    document.getElementById("token").value = "";
    refreshData();
  });
  document.getElementById("forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    askForToken("");
  });
}

// A refused token is forgotten at once (no request is sent with it again) and another asked for.
function handleReadError(error) {
  if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
    const had = token();
    sessionStorage.removeItem(TOKEN_KEY);
    if (error.status === 403) {
      askForToken("That token may not read the cluster's status: use a reader, operator or admin token.");
    } else {
      askForToken(had ? "That token is not accepted (unknown, revoked or expired)." : "");
    }
  } else {
    text("problem", `no answer: ${error.message}`);
  }
}

// --- members -----------------------------------------------------------------------------------

function learnMembers(members) {
  const ids = Object.keys(members || {}).sort();
  for (const id of ids) {
    let origin;
    try {
      origin = new URL(members[id].api_url).origin;
    } catch {
      continue;
    }
    const known = view.members.get(origin) || {answer: null, error: null};
    view.members.set(origin, Object.assign(known, {id, url: members[id].api_url}));
  }
  view.order = [...view.members.keys()].sort((a, b) =>
    (view.members.get(a).id || a).localeCompare(view.members.get(b).id || b));
}

async function probeMembers() {
  await Promise.all(view.order.map(async (origin) => {
    const entry = view.members.get(origin);
    try {
      const body = await request(origin, "/readyz");
      entry.answer = body.member;
      entry.error = null;
    } catch (error) {
      entry.answer = null;
      entry.error = error.name === "AbortError" ? "no answer" : "unreachable";
    }
  }));
  renderMembers();
}

// One round of probes at a time: the next starts MEMBER_POLL_MS after the last one ended, so a
// late answer never overwrites a newer one.
async function probeLoop() {
  for (;;) {
    await probeMembers();
    await sleep(MEMBER_POLL_MS);
  }
}

// The leader: the member that says it leads in the highest term; failing that, the one most
// members name.
function currentLeader() {
  let best = null;
  for (const entry of view.members.values()) {
    const a = entry.answer;
    if (a && a.role === "leader" && (best === null || a.term > best.term)) best = a;
  }
  if (best) return {id: best.member_id, term: best.term};
  const votes = new Map();
  for (const entry of view.members.values()) {
    const id = entry.answer && entry.answer.leader_id;
    if (id) votes.set(id, (votes.get(id) || 0) + 1);
  }
  const named = [...votes.entries()].sort((a, b) => b[1] - a[1])[0];
  const terms = [...view.members.values()].map((e) => e.answer?.term || 0);
  return {id: named ? named[0] : null, term: Math.max(0, ...terms)};
}

function renderMembers() {
  const leader = currentLeader();
  const leaderNode = document.getElementById("leader");
  leaderNode.textContent = leader.id || "none";
  leaderNode.dataset.leader = leader.id || "";
  text("term", leader.term || "?");
  text("source", view.source ? (view.members.get(view.source)?.id || view.source) : "?");
  // The page's own origin is listed until the cluster names its members (it may be a name
  // the members do not use, such as localhost).
  const named = view.order.filter((origin) => view.members.get(origin).id);
  fill("members", (named.length ? named : view.order).map((origin) => {
    const entry = view.members.get(origin);
    const a = entry.answer;
    const role = a ? a.role : entry.error;
    const row = el("tr", {dataset: {member: entry.id || origin, role},
                          class: a ? (a.member_id === leader.id ? "leader" : "") : "down"},
      el("td", {text: entry.id || "?"}),
      el("td", {text: a && a.member_id === leader.id ? `${role} ★` : role}),
      el("td", {text: a ? a.term : "–"}),
      el("td", {text: a ? a.commit_index : "–"}),
      el("td", {text: a ? a.applied_index : "–"}),
      el("td", {text: a ? (a.ready ? "yes" : "no") : "–"}),
      el("td", {}, el("a", {href: `${origin}/ui`, text: origin})));
    return row;
  }));
}

// --- data --------------------------------------------------------------------------------------

let refreshing = false;
let lastRouting = 0;
let lastRebalance = 0;
const REBALANCE_POLL_MS = 2000;

// A read whose failure leaves the page showing what it had (a refused token still asks again).
async function optional(pending, had) {
  try {
    return await pending;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) throw error;
    text("problem", `no answer: ${error.message}`);
    return had;
  }
}

function partitionCount() {
  if (!view.routing) return 0;
  return Object.values(view.routing.resources).reduce((n, res) => n + res.partitions.length, 0);
}

async function refreshData() {
  if (!token()) {
    if (!document.getElementById("login").open) askForToken("");
    return;
  }
  if (refreshing) return;
  refreshing = true;
  try {
    const status = await read("/v1/status", READ_TIMEOUT_MS.status);
    text("problem", "");
    document.getElementById("forget").hidden = false;
    const dialog = document.getElementById("login");
    if (dialog.open) dialog.close();
    learnMembers(status.members);
    view.status = status;
    const moved = status.revision !== view.revision;
    if (moved || view.routing === null) {
      view.nodes = (await read("/v1/nodes", READ_TIMEOUT_MS.nodes)).nodes;
      view.revision = status.revision;
    }
    const since = Date.now() - lastRouting;
    // A large routing table (megabytes) is read again at most every BIG_ROUTING_GAP_MS.
    const gap = partitionCount() > BIG_ROUTING ? BIG_ROUTING_GAP_MS : 0;
    if (view.routing === null || (moved && since >= gap) || since > Math.max(gap, 5 * DATA_POLL_MS)) {
      lastRouting = Date.now();  // a failed read is not retried at once either
      view.routing = await optional(read("/v1/routing", READ_TIMEOUT_MS.routing), view.routing);
    }
    if (Date.now() - lastRebalance >= REBALANCE_POLL_MS || moved) {
      lastRebalance = Date.now();
      view.rebalance = await optional(read("/v1/rebalance", READ_TIMEOUT_MS.rebalance), view.rebalance);
    }
    if (view.routing === null || view.rebalance === null) return;
    if (view.since === null) startWatching(status.revision);
    render();
  } catch (error) {
    handleReadError(error);
  } finally {
    refreshing = false;
  }
}

// --- the change feed ---------------------------------------------------------------------------

let watching = false;

function startWatching(revision) {
  if (watching) return;
  watching = true;
  view.since = Math.max(0, revision - 30);  // a few recent changes to begin with
  watchLoop();
}

async function watchLoop() {
  for (;;) {
    if (!token()) {  // signed out: wait for a token
      await sleep(500);
      continue;
    }
    try {
      const body = await read(`/v1/watch?since=${view.since}&timeout=${WATCH_SECONDS}`,
                              (WATCH_SECONDS + 5) * 1000);
      for (const event of body.events) view.changes.unshift(event);
      view.changes.length = Math.min(view.changes.length, MAX_CHANGES);
      if (body.events.length) {
        view.since = body.events[body.events.length - 1].revision;
        renderChanges();
        refreshData();
      }
    } catch (error) {
      if (error instanceof ApiError && error.code === "compacted") {
        view.since = view.revision || 0;
      } else if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
        handleReadError(error);
      }
      await sleep(300);
    }
  }
}

function describe(event) {
  const d = event.data || {};
  const where = d.resource !== undefined
    ? `${d.resource}${d.partition !== undefined ? "/" + d.partition : ""}` : "";
  const node = d.node_id || d.id || d.node || "";
  return [where, node, d.status, d.admin, d.reason].filter(Boolean).join(" · ");
}

function renderChanges() {
  fill("changes", view.changes.map((event) => el("li", {},
    el("span", {class: "rev", text: `r${event.revision}`}), " ",
    el("strong", {text: event.type}), " ",
    el("span", {text: describe(event)}), " ",
    el("span", {class: "who", text: event.audit ? `by ${event.audit.principal}` : ""}))));
}

// --- rendering ---------------------------------------------------------------------------------

// The same judgement as hacoord.core.health.partition_health.
function partitionHealth(part, rf, status) {
  const st = (n) => status.get(n) || "down";
  if (part.replicas.every((n) => st(n) === "down")) return "unavailable";
  if (part.leader === null || st(part.leader) === "down") return "leaderless";
  if (part.replicas.filter((n) => st(n) === "up").length < rf) return "under_replicated";
  return "healthy";
}

// What the nodes table and the map were last drawn from (redrawn only when it changes).
const drawn = {nodes: null, routing: null};

function render() {
  const s = view.status;
  const health = s.health || {};
  const badge = document.getElementById("health");
  badge.textContent = health.status || "?";
  badge.dataset.status = health.status || "unknown";
  text("revision", s.revision);
  const n = health.nodes || {};
  text("node-counts", `${n.up || 0} up, ${n.suspect || 0} suspect, ${n.down || 0} down`);
  const p = health.partitions || {};
  text("partition-counts", HEALTH.map((h) => `${p[h] || 0} ${h.replace("_", "-")}`).join(", "));
  renderMembers();
  if (drawn.nodes !== view.nodes || drawn.routing !== view.routing) {
    drawn.nodes = view.nodes;
    drawn.routing = view.routing;
    renderNodes();
    renderMap();
  }
  renderRebalance();
}

function renderNodes() {
  const held = new Map();
  const leads = new Map();
  for (const res of Object.values(view.routing.resources)) {
    for (const part of res.partitions) {
      for (const n of part.replicas) held.set(n, (held.get(n) || 0) + 1);
      if (part.leader) leads.set(part.leader, (leads.get(part.leader) || 0) + 1);
    }
  }
  fill("nodes", view.nodes.map((node) => el("tr", {dataset: {node: node.id, status: node.status}},
    el("td", {text: node.id, title: node.address}),
    el("td", {class: `s-${node.status}`, text: node.status}),
    el("td", {text: node.admin + (node.admin_reason ? ` (${node.admin_reason})` : "")}),
    el("td", {text: node.zone}),
    el("td", {text: node.capacity}),
    el("td", {text: held.get(node.id) || 0}),
    el("td", {text: leads.get(node.id) || 0}),
    el("td", {text: node.epoch <= 1 ? "no session yet" : `epoch ${node.epoch}`}),
    el("td", {text: Object.entries(node.metrics || {}).map(([k, v]) => `${k}=${v}`).join(" ")}))));
}

function renderMap() {
  const status = new Map(view.nodes.map((node) => [node.id, node.status]));
  const rows = [];
  let budget = MAX_TOTAL_CELLS;
  for (const [name, res] of Object.entries(view.routing.resources)) {
    const cells = [];
    const hidden = {};
    const limit = Math.min(MAX_CELLS, budget);
    budget -= Math.min(limit, res.partitions.length);
    res.partitions.forEach((part, i) => {
      const health = partitionHealth(part, res.replication_factor, status);
      if (i >= limit) {
        hidden[health] = (hidden[health] || 0) + 1;
        return;
      }
      const adding = part.adding.length ? ` adding ${part.adding.join(", ")}` : "";
      cells.push(el("button", {
        type: "button",
        class: `cell h-${health}${part.adding.length ? " moving" : ""}`,
        dataset: {partition: `${name}/${i}`, health},
        title: `${name}/${i} ${health.replace("_", "-")}: replicas ${part.replicas.join(", ")}; ` +
               `leader ${part.leader || "none"}; epoch ${part.epoch}${adding}`,
      }));
    });
    const more = Object.entries(hidden).map(([h, k]) => `${k} ${h.replace("_", "-")}`).join(", ");
    rows.push(el("div", {class: "resource", dataset: {resource: name}},
      el("h3", {text: `${name} (${res.partitions.length} × RF ${res.replication_factor})`}),
      el("div", {class: "cells"}, ...cells),
      more ? el("p", {text: `${res.partitions.length - limit} more not drawn: ${more}`}) : ""));
  }
  fill("map", rows.length ? rows : [el("p", {text: "no resources yet"})]);
}

async function explainCell(target) {
  const key = target.dataset.partition;
  const slash = key.lastIndexOf("/");
  const box = document.getElementById("explain");
  view.explainOf = key;
  box.hidden = false;
  box.textContent = `${key}: asking…`;
  try {
    const name = encodeURIComponent(key.slice(0, slash));
    const answer = await read(`/v1/resources/${name}/partitions/${key.slice(slash + 1)}/explain`,
                              READ_TIMEOUT_MS.explain);
    if (view.explainOf === key) box.textContent = `${key}\n${JSON.stringify(answer, null, 2)}`;
  } catch (error) {
    if (view.explainOf === key) box.textContent = `${key}: ${error.message}`;
  }
}

function renderRebalance() {
  const r = view.rebalance;
  const panel = document.getElementById("rebalance");
  panel.dataset.pending = r.pending.length;
  panel.dataset.remaining = r.remaining;
  panel.dataset.completed = r.completed_total;
  const parts = [
    r.run ? `run ${r.run.id} running` : "no run",
    `${r.pending.length} in flight`,
    `${r.remaining} left`,
    `${r.completed_total} completed`,
    `ETA ${seconds(r.eta_seconds)}`,
  ];
  if (r.maintenance) parts.push(`maintenance: ${r.maintenance.reason || "on"}`);
  if (r.exclude.length) parts.push(`draining ${r.exclude.join(", ")}`);
  text("rebalance-summary", parts.join(" · "));
  fill("moves", r.pending.map((m) => el("tr", {},
    el("td", {text: `${m.resource}/${m.partition}`}),
    el("td", {text: m.from_node || "–"}),
    el("td", {text: m.to_node}),
    el("td", {text: m.reason || ""}),
    el("td", {text: seconds(m.age)}))));
}

// --- start -------------------------------------------------------------------------------------

function start() {
  setUpLogin();
  view.members.set(location.origin, {id: null, url: location.origin, answer: null, error: null});
  view.order = [location.origin];
  document.getElementById("map").addEventListener("click", (event) => {
    const cell = event.target.closest(".cell");
    if (cell) explainCell(cell);
  });
  probeLoop();
  setInterval(refreshData, DATA_POLL_MS);
  refreshData();
}

document.addEventListener("DOMContentLoaded", start);
