// The agent desktop: the live handoff queue (server-sent events), claim and close. The
// agent is whoever is signed in (page.js: the session); changes carry its CSRF token.
"use strict";
const DISPOSITIONS = ["resolved", "callback", "escalated", "transferred", "no_answer", "other"];
const cards = new Map();
let filter = "open";
const stamp = s => (s == null ? "" : `${String(Math.floor(s / 60)).padStart(2, "0")}:${(s % 60).toFixed(1).padStart(4, "0")}`);
const ago = t => { const s = Math.max(0, Date.now() / 1000 - t); return s < 60 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`; };

const left = c => c.status === "closed" && c.disposition === "abandoned";
function visible(c) {
  if (filter === "closed") return c.status === "closed";
  if (c._seenOpen && left(c)) return filter === "open";  // stays a moment: "caller left"
  if (filter === "mine") return c.status !== "closed" && c.agent === session.name;
  return c.status !== "closed";
}

async function act(c, verb, body, errNode) {
  const res = await post(`/api/handoffs/${encodeURIComponent(c.handoff_id)}/${verb}`, body);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) { errNode.textContent = data.detail ? (typeof data.detail === "string" ? data.detail : "invalid request") : `error ${res.status}`; return; }
  upsert(data, false);
  if (verb === "claim" && onTheLine(data)) answer(data).catch(err => { phoneStatus("error: " + err); });
}

// --- the softphone: the claimed caller's voice here, the agent's microphone into the call ---
const onTheLine = c => ["holding", "offering"].includes((c.queue || {}).state);
// What the agent heard and saw, for people and for the end-to-end test.
window.desk = { heard: [], heardSamples: 0, events: [], closed: null, connected: false };
let phone = null;
const $ = id => document.getElementById(id);
function phoneStatus(text) { $("phone-status").textContent = text; }

async function answer(c) {
  if (phone) return;
  const ctx = new AudioContext({ sampleRate: 16000 });
  await ctx.audioWorklet.addModule("/call-worklet.js");
  let stream = null;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, channelCount: 1 } });
  } catch (err) { phoneStatus("no microphone: listening only"); }
  // The worker holding the caller (behind a balancer: deploy/haproxy.cfg routes ?worker=).
  const worker = (c.queue || {}).worker ? `?worker=${encodeURIComponent(c.queue.worker)}` : "";
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/desk/bridge/${encodeURIComponent(c.handoff_id)}${worker}`);
  ws.binaryType = "arraybuffer";
  phone = { ws, ctx, stream, playAt: 0 };
  $("softphone").hidden = false;
  $("phone-caller").textContent = c.caller_id || "unknown caller";
  $("phone-turns").replaceChildren();
  phone.assist = assistPanel($("phone-assist"), c.handoff_id);  // suggestions, turn by turn
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "start", sampleRate: ctx.sampleRate }));
    if (stream) {
      const mic = new AudioWorkletNode(ctx, "mic-frames");
      ctx.createMediaStreamSource(stream).connect(mic);
      mic.port.onmessage = e => { if (ws.readyState === WebSocket.OPEN) ws.send(e.data); };
    }
    window.desk.connected = true;
    phoneStatus("connected");
  };
  ws.onmessage = e => {
    if (typeof e.data !== "string") { hear(e.data); return; }
    const event = JSON.parse(e.data);
    window.desk.events.push(event);
    if (event.type === "turn" && event.text) $("phone-turns").append(el("li", { class: event.role }, el("span", { class: "who" }, event.role === "agent" ? "You" : "Caller"), event.text));
    else if (event.type === "ended") phoneStatus(event.reason);
  };
  ws.onclose = e => {
    window.desk.closed = { code: e.code, reason: e.reason };
    phoneStatus(`call over (${e.reason || e.code})`);
    if (stream) stream.getTracks().forEach(t => t.stop());
    phone.assist.close();  // what was suggested stays on screen
    phone = null;
  };
}

function hear(buffer) {
  const pcm = new Int16Array(buffer);
  window.desk.heard.push(pcm);
  window.desk.heardSamples += pcm.length;
  const audio = phone.ctx.createBuffer(1, pcm.length, 16000);
  const out = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
  const source = phone.ctx.createBufferSource();
  source.buffer = audio;
  source.connect(phone.ctx.destination);
  phone.playAt = Math.max(phone.playAt, phone.ctx.currentTime + 0.04);
  source.start(phone.playAt);
  phone.playAt += audio.duration;
}

// The caller's audio as heard, base64 PCM16 16 kHz (the test runs Whisper on it).
window.desk.heardBase64 = () => {
  const all = new Int16Array(window.desk.heardSamples);
  let at = 0;
  for (const chunk of window.desk.heard) { all.set(chunk, at); at += chunk.length; }
  const bytes = new Uint8Array(all.buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(text);
};
$("phone-hangup").addEventListener("click", () => { if (phone && phone.ws.readyState === WebSocket.OPEN) phone.ws.send(JSON.stringify({ type: "hangup" })); });

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
  const q = c.queue || {};
  const wait = q.state === "callback_requested" ? "callback requested" : q.state === "offering" ? "waiting · offered a callback" : "waiting";
  const status = left(c) ? "caller left" : c.status === "queued" ? wait : c.status === "claimed" ? `claimed by ${c.agent}${q.state === "answered" ? " · on the line" : ""}` : `closed by ${c.agent}: ${c.disposition}`;
  return el("article", { class: "card", "data-id": c.handoff_id, "data-status": c.status },
    el("div", { class: "top" },
      el("span", { class: `badge ${c.reason}` }, REASONS[c.reason] || c.reason),
      el("strong", {}, c.caller_id || "unknown caller"),
      el("span", c.status === "queued" && wait === "waiting" ? { class: "status", "data-since": c.created_at } : { class: "status" }, status)),
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

function upsert(c, fresh) {
  const before = cards.get(c.handoff_id);
  c._new = fresh && !before;
  c._seenOpen = (before && (before._seenOpen || before.status !== "closed")) || false;
  cards.set(c.handoff_id, c);
  render();
}

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
