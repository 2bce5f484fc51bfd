// The agent desktop: the live handoff queue (server-sent events), claim and close. The
// agent is whoever is signed in (page.js: the session); changes carry its CSRF token.
"use strict";
const DISPOSITIONS = ["resolved", "callback", "escalated", "transferred", "no_answer", "other"];
const cards = new Map();
let filter = "open";
const stamp = s => (s == null ? "" : `${String(Math.floor(s / 60)).padStart(2, "0")}:${(s % 60).toFixed(1).padStart(4, "0")}`);
const ago = t => { const s = Math.max(0, Date.now() / 1000 - t); return s < 60 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`; };

function visible(c) {
  if (filter === "closed") return c.status === "closed";
  if (filter === "mine") return c.status !== "closed" && c.agent === session.name;
  return c.status !== "closed";
}

async function act(c, verb, body, errNode) {
  const res = await post(`/api/handoffs/${encodeURIComponent(c.handoff_id)}/${verb}`, body);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) { errNode.textContent = data.detail ? (typeof data.detail === "string" ? data.detail : "invalid request") : `error ${res.status}`; return; }
  upsert(data, false);
}

function renderCard(c) {
  const err = el("span", { class: "error", role: "alert" });
  const v = c.verification || {};
  const chips = [
    el("span", { class: "chip " + (v.verified ? "good" : "warn") }, v.verified ? `verified ${v.customer_id}` : (v.customer_id ? `NOT verified (${v.customer_id})` : "not identified")),
    ...Object.entries(c.slots || {}).map(([k, val]) => el("span", { class: "chip" }, `${k.replaceAll("_", " ")}: ${val}`)),
    ...((c.sentiment || {}).cues || []).map(cue => el("span", { class: "chip warn" }, `“${cue}”`)),
    el("span", { class: "chip consent " + (["granted", "notified"].includes((c.consent || {}).state) ? "good" : "warn") }, `recording consent: ${(c.consent || {}).state || "none"}`),
  ];
  const turns = (c.transcript || []).map(t => el("li", {},
    el("span", { class: "t" }, stamp(t.start)), el("span", { class: "who" }, t.role === "bot" ? "Bot" : "Caller"), t.text || "…",
    t.role === "caller" && t.intent ? el("span", { class: "meta" }, `  (${t.intent}${t.confidence != null ? " " + Number(t.confidence).toFixed(2) : ""})`) : null));
  const actions = el("div", { class: "actions" });
  if (c.status === "queued") {
    actions.append(el("button", { class: "claim", onclick: () => act(c, "claim", {}, err) }, "Claim"));
  } else if (c.status === "claimed" && c.agent === session.name) {
    const select = el("select", { class: "disposition", "aria-label": "disposition" }, DISPOSITIONS.map(d => el("option", { value: d }, d)));
    actions.append(select, el("button", { class: "close", onclick: () => act(c, "close", { disposition: select.value }, err) }, "Close"));
  }
  actions.append(err);
  const status = c.status === "queued" ? "waiting" : c.status === "claimed" ? `claimed by ${c.agent}` : `closed by ${c.agent}: ${c.disposition}`;
  return el("article", { class: "card", "data-id": c.handoff_id, "data-status": c.status },
    el("div", { class: "top" },
      el("span", { class: `badge ${c.reason}` }, REASONS[c.reason] || c.reason),
      el("strong", {}, c.caller_id || "unknown caller"),
      el("span", c.status === "queued" ? { class: "status", "data-since": c.created_at } : { class: "status" }, status)),
    el("div", { class: "summary" }, c.summary),
    el("div", { class: "chips" }, chips),
    el("details", {}, el("summary", {}, `Transcript (${turns.length} turns)`), el("ol", { class: "transcript" }, turns)),
    el("div", { class: "meta" }, `call ${c.call_id} · ${c.explanation || ""} · summary: ${c.summary_source}`,
      c.recording ? [" · ", el("a", { class: "recording", href: `/api/calls/${encodeURIComponent(c.call_id)}/recording`, title: c.recording }, "recording")] : null),
    actions);
}

// Cards are replaced only when their content changed: replacing the button under the
// agent's pointer between mousedown and mouseup would swallow the click.
function render() {
  const queue = document.getElementById("queue");
  const current = new Map([...queue.querySelectorAll("article")].map(a => [a.dataset.id, a]));
  const shown = [...cards.values()].filter(visible).sort((a, b) => b.created_at - a.created_at);
  const nodes = shown.map(c => {
    const fresh = renderCard(c);
    fresh.dataset.sig = fresh.outerHTML;
    const old = current.get(c.handoff_id);
    if (old && old.dataset.sig === fresh.dataset.sig) return old;
    if (old) { const details = old.querySelector("details"); fresh.querySelector("details").open = details.open; }
    if (c._new) fresh.classList.add("new");
    c._new = false;
    return fresh;
  });
  if (!nodes.length) nodes.push(el("p", { class: "empty" }, filter === "closed" ? "No closed handoffs yet." : "No handoffs waiting. New ones appear here as they happen."));
  const same = nodes.length === queue.children.length && nodes.every((n, i) => queue.children[i] === n);
  if (!same) queue.replaceChildren(...nodes);
  tick();
}

function tick() {  // "waiting · 12 s ago", without touching anything clickable
  document.querySelectorAll("[data-since]").forEach(s => { s.textContent = `waiting · ${ago(Number(s.dataset.since))}`; });
}

function upsert(c, fresh) { c._new = fresh && !cards.has(c.handoff_id); cards.set(c.handoff_id, c); render(); }

document.querySelectorAll("nav button").forEach(b => b.addEventListener("click", () => {
  filter = b.dataset.filter;
  document.querySelectorAll("nav button").forEach(x => x.setAttribute("aria-pressed", String(x === b)));
  if (filter === "closed") fetch("/api/handoffs?status=closed").then(r => (r.status === 401 ? signIn() : r.json())).then(list => (list || []).forEach(c => cards.set(c.handoff_id, c))).then(render);
  render();
}));

function connect() {
  follow("/api/handoffs/stream", {
    snapshot: list => { list.forEach(c => cards.set(c.handoff_id, c)); render(); },
    handoff: c => upsert(c, true),
  });
}

startPage(() => { connect(); setInterval(tick, 5000); });
