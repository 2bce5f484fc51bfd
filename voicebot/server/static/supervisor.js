// The supervisor view: live calls and alerts (server-sent events), KPI charts (drawn here as
// SVG: the page loads nothing from elsewhere), QA results with a drill-down to a call's
// scorecard and transcript. Every figure comes from the server's API; text is added with
// append()/textContent, never parsed as HTML.
"use strict";
const STATES = { bot: "with the bot", handing_off: "handing off", queued: "in queue", with_agent: "with agent" };
const KINDS = { angry_caller: "angry caller", long_queue_wait: "long queue wait",
                repeated_failures: "repeated failures", qa_violation: "QA violation" };
const SVGNS = "http://www.w3.org/2000/svg";
let board = [];
let alerts = [];
let since = "7d";

function sv(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children.flat(Infinity)) if (c != null) node.append(c);
  return node;
}
async function getJSON(url) {
  const res = await fetch(url);
  if (res.status === 401) { signIn(); throw new Error("signed out"); }
  const data = await res.json().catch(() => ({}));
  return { ok: res.ok, status: res.status, data };
}
const pct = v => (v == null ? "–" : `${Math.round(v * 100)}%`);
const secs = v => (v == null ? "–" : v < 90 ? `${Math.round(v)} s` : `${(v / 60).toFixed(1)} min`);
const num = (v, d = 1) => (v == null ? "–" : Number(v).toFixed(d).replace(/^-(0\.?0*)$/, "$1"));
const clock = s => { s = Math.max(0, Math.round(s)); return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; };
const when = t => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const stamp = s => (s == null ? "" : clock(s));

// --- live calls -----------------------------------------------------------------------------

function waitText(row) {
  if (row.queued_at == null) return "";
  const end = row.claimed_at != null ? row.claimed_at : Date.now() / 1000;
  return clock(end - row.queued_at);
}

function renderBoard() {
  document.getElementById("live-count").textContent = board.length ? `(${board.length})` : "";
  const box = document.getElementById("board");
  if (!board.length) { box.replaceChildren(el("p", { class: "empty" }, "No calls in progress.")); return; }
  const rows = board.map(r => {
    const mood = r.sentiment || {};
    return el("tr", { class: "pick", "data-call": r.call_id, "data-state": r.state, onclick: () => drill(r.call_id) },
      el("td", { class: "mono" }, r.call_id),
      el("td", { class: "nowrap" }, r.caller_id || "withheld"),
      el("td", {}, el("span", { class: `state ${r.state}` }, STATES[r.state] || r.state),
        r.reason ? el("div", { class: "cue" }, REASONS[r.reason] || r.reason) : null),
      el("td", { class: "intent" }, (r.intent || "none").replaceAll("_", " ")),
      el("td", { class: `mood ${mood.label}` }, mood.label || "",
        (mood.cues || []).length ? el("div", { class: "cue" }, mood.cues.map(c => `“${c}”`).join(" ")) : null),
      el("td", { class: "wait", "data-queued": r.queued_at, "data-claimed": r.claimed_at }, waitText(r)),
      el("td", {}, r.agent || ""),
      el("td", { class: "words" }, r.last_caller || ""));
  });
  const head = el("tr", {}, ["Call", "Caller", "State", "Intent", "Sentiment", "In queue", "Agent", "Last said"].map(h => el("th", {}, h)));
  box.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, rows)));
}

function tick() {  // the time in queue of waiting callers, every second
  document.querySelectorAll("td.wait[data-queued]").forEach(td => {
    const row = { queued_at: Number(td.dataset.queued), claimed_at: td.dataset.claimed ? Number(td.dataset.claimed) : null };
    td.textContent = waitText(row);
  });
}

// --- alerts ---------------------------------------------------------------------------------

function renderAlerts(fresh) {
  document.getElementById("alert-count").textContent = alerts.length ? `(${alerts.length})` : "";
  const list = document.getElementById("alerts");
  if (!alerts.length) { list.replaceChildren(el("li", { class: "empty" }, "No alerts in the last 24 hours.")); return; }
  list.replaceChildren(...alerts.map(a => el("li", {
    class: fresh.has(a.alert_id) ? "new" : null, "data-kind": a.kind, "data-id": a.alert_id,
    onclick: () => a.call_id && drill(a.call_id) },
  el("span", { class: "when" }, when(a.created_at)),
  el("div", { class: "kind" }, KINDS[a.kind] || a.kind),
  el("div", {}, a.message),
  a.call_id ? el("div", { class: "cue mono" }, `call ${a.call_id}`) : null)));
}

// --- KPI charts -------------------------------------------------------------------------------

const W = 340, H = 170, PAD = { l: 34, r: 8, t: 8, b: 24 };

function frame(max, ticks, fmt) {
  const g = [];
  for (let i = 0; i <= ticks; i++) {
    const y = PAD.t + (H - PAD.t - PAD.b) * (1 - i / ticks);
    g.push(sv("line", { class: "grid", x1: PAD.l, x2: W - PAD.r, y1: y, y2: y }),
      sv("text", { x: PAD.l - 4, y: y + 3, "text-anchor": "end" }, fmt((max * i) / ticks)));
  }
  return g;
}
function xLabels(labels, step) {
  const every = Math.max(1, Math.ceil(labels.length / 7));
  return labels.map((l, i) => (i % every ? null :
    sv("text", { x: PAD.l + step * (i + 0.5), y: H - 8, "text-anchor": "middle" }, l.slice(5))));
}
function figure(caption, chart, legend) {
  return el("figure", {}, el("figcaption", {}, caption), chart,
    legend ? el("div", { class: "legend" }, legend.map(([cls, name]) => el("span", {}, el("span", { class: `swatch ${cls}` }), name))) : null);
}

function stackedBars(caption, labels, series) {  // series: [{name, cls, color, values}]
  const totals = labels.map((_, i) => series.reduce((s, x) => s + x.values[i], 0));
  const max = Math.ceil(Math.max(1, ...totals) / 4) * 4;  // whole numbers on the axis
  const step = (W - PAD.l - PAD.r) / labels.length;
  const bars = [];
  labels.forEach((_, i) => {
    let base = 0;
    for (const s of series) {
      const h = ((H - PAD.t - PAD.b) * s.values[i]) / max;
      const y = H - PAD.b - base - h;
      const width = Math.min(step * 0.7, 36);
      bars.push(sv("rect", { x: PAD.l + step * (i + 0.5) - width / 2, y, width, height: Math.max(0, h), fill: s.color },
        sv("title", {}, `${labels[i]}: ${s.values[i]} ${s.name}`)));
      base += h;
    }
  });
  const chart = sv("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": caption },
    frame(max, 4, v => Math.round(v)), bars, xLabels(labels, step));
  return figure(caption, chart, series.map(s => [s.cls, s.name]));
}

function lines(caption, labels, series, max, fmt) {  // values may be null (not measured)
  const step = (W - PAD.l - PAD.r) / labels.length;
  const y = v => PAD.t + (H - PAD.t - PAD.b) * (1 - v / max);
  const drawn = series.map(s => {
    const pts = s.values.map((v, i) => (v == null ? null : [PAD.l + step * (i + 0.5), y(v)])).filter(Boolean);
    return [sv("polyline", { points: pts.map(p => p.join(",")).join(" "), fill: "none", stroke: s.color, "stroke-width": 2 }),
      pts.map(([cx, cy]) => sv("circle", { cx, cy, r: 3, fill: s.color }))];
  });
  const chart = sv("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": caption },
    frame(max, 4, fmt), drawn, xLabels(labels, step));
  return figure(caption, chart, series.map(s => [s.cls, s.name]));
}

function hbars(caption, entries, fmt) {  // entries: [[label, value]]
  const rowH = 22, height = Math.max(1, entries.length) * rowH + 8, left = 130;
  const max = Math.max(1e-9, ...entries.map(e => e[1]));
  const rows = entries.map(([label, v], i) => [
    sv("text", { x: left - 6, y: 4 + i * rowH + 14, "text-anchor": "end" }, label),
    sv("rect", { x: left, y: 4 + i * rowH + 3, width: ((W - left - 40) * v) / max, height: rowH - 8, fill: "#f59e0b" }),
    sv("text", { x: left + ((W - left - 40) * v) / max + 4, y: 4 + i * rowH + 14 }, fmt(v))]);
  const chart = entries.length
    ? sv("svg", { viewBox: `0 0 ${W} ${height}`, role: "img", "aria-label": caption }, rows)
    : el("p", { class: "empty" }, "No handoffs in this range.");
  return figure(caption, chart);
}

function tiles(t) {
  const items = [
    ["calls", t.calls], ["containment", pct(t.containment)], ["first-call resolution", pct(t.fcr)],
    ["bot handle time", secs(t.bot_handle_s)], ["human handle time", secs(t.human_handle_s)],
    ["queue wait", secs(t.queue_wait_s)], ["abandonment", pct(t.abandonment)],
    ["CSAT", t.csat == null ? "–" : `${num(t.csat)} / 5`], ["QA score", num(t.qa_score, 0)],
    ["sentiment start → end", `${num(t.sentiment_start)} → ${num(t.sentiment_end)}`]];
  return el("div", { class: "tiles" }, items.map(([k, v]) => el("div", { class: "tile", "data-kpi": k }, el("div", { class: "v" }, String(v)), el("div", { class: "k" }, k))));
}

function renderKpis(report) {
  const days = report.days.map(d => d.day);
  const t = report.total;
  document.getElementById("kpi-range").textContent = `${report.since.slice(0, 10)} – ${report.until.slice(0, 16).replace("T", " ")} UTC`;
  const reasons = Object.entries(t.handoffs).sort((a, b) => b[1] - a[1]).map(([r, n]) => [REASONS[r] || r, n]);
  const charts = el("div", { class: "charts" },
    stackedBars("Calls per day", days, [
      { name: "contained", cls: "s-contained", color: "#16a34a", values: report.days.map(d => d.contained) },
      { name: "handed off", cls: "s-handoff", color: "#f59e0b", values: report.days.map(d => d.calls - d.contained) }]),
    lines("Containment and first-call resolution", days, [
      { name: "containment", cls: "s-containment", color: "#2563eb", values: report.days.map(d => d.containment) },
      { name: "FCR", cls: "s-fcr", color: "#7c3aed", values: report.days.map(d => d.fcr) }], 1, v => `${Math.round(v * 100)}%`),
    lines("Mean QA score", days, [
      { name: "QA score (0-100)", cls: "s-bot", color: "#0ea5e9", values: report.days.map(d => d.qa_score) }], 100, v => Math.round(v)),
    hbars("Handoffs by reason", reasons, v => String(v)));
  const failures = t.top_failures.length
    ? el("div", {}, el("h3", {}, "Top failure reasons"), el("ol", { class: "failures" }, t.top_failures.map(([name, n]) => el("li", {}, `${name} (${n})`))))
    : null;
  document.getElementById("kpi-body").replaceChildren(tiles(t), charts, failures || "");
}

async function loadKpis() {
  const body = document.getElementById("kpi-body");
  const { ok, data } = await getJSON(`/api/kpis?since=${encodeURIComponent(sinceParam())}`);
  if (ok) { renderKpis(data); return; }
  document.getElementById("kpi-range").textContent = "";
  body.replaceChildren(el("p", { class: "message", id: "kpi-message" }, typeof data.detail === "string" ? data.detail : "The KPIs are not available."));
}

function sinceParam() { return since === "today" ? new Date().toISOString().slice(0, 10) : since; }

// --- QA results and the drill-down -------------------------------------------------------

async function loadQa() {
  const failed = document.getElementById("failed-only").checked;
  const { ok, data } = await getJSON(`/api/qa?since=${encodeURIComponent(sinceParam())}&failed=${failed}`);
  const body = document.getElementById("qa-body");
  if (!ok) { body.replaceChildren(el("p", { class: "message" }, String(data.detail || "QA results are not available."))); return; }
  document.getElementById("qa-count").textContent = data.length ? `(${data.length}${data.length >= 100 ? "+" : ""})` : "";
  if (!data.length) { body.replaceChildren(el("p", { class: "message", id: "qa-message" }, failed ? "No failed calls in this range." : "No scored calls in this range.")); return; }
  const head = el("tr", {}, ["Call", "Started", "Pack", "Form", "Bot", "Agent", "Result", "Failed criteria"].map(h => el("th", {}, h)));
  const rows = data.map(r => el("tr", { class: "pick", "data-call": r.call_id, onclick: () => drill(r.call_id) },
    el("td", { class: "mono" }, r.call_id), el("td", { class: "nowrap" }, r.started_at.slice(0, 16).replace("T", " ")),
    el("td", {}, r.pack || ""), el("td", {}, r.form), el("td", {}, num(r.bot_score, 0)), el("td", {}, num(r.agent_score, 0)),
    el("td", { class: `nowrap ${r.passed === false ? "fail" : r.passed ? "pass" : "na"}` }, r.passed === false ? "failed" : r.passed ? "passed" : "n/a"),
    el("td", {}, (r.failed || []).join(", "))));
  body.replaceChildren(el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), el("tbody", {}, rows))));
}

async function drill(callId) {
  const panel = document.getElementById("drill");
  panel.hidden = false;
  document.querySelectorAll("tr.picked").forEach(r => r.classList.remove("picked"));
  document.querySelectorAll(`tr[data-call="${CSS.escape(callId)}"]`).forEach(r => r.classList.add("picked"));
  document.getElementById("drill-title").textContent = `Call ${callId}`;
  const [call, card] = await Promise.all([getJSON(`/api/calls/${encodeURIComponent(callId)}`), getJSON(`/api/qa/${encodeURIComponent(callId)}`)]);
  const transcript = document.getElementById("drill-transcript");
  const turns = call.ok ? call.data.turns || [] : [];
  transcript.replaceChildren(...(turns.length ? turns.map((t, i) => el("li", { "data-turn": i },
    el("span", { class: "t" }, `#${i} ${stamp(t.start)}`), el("span", { class: "who" }, t.role === "bot" ? "Bot" : t.role === "agent" ? "Agent" : "Caller"),
    t.dropped ? el("span", { class: "na" }, `(${t.dropped})`) : t.text || "…",
    t.role === "caller" && t.intent ? el("span", { class: "cue" }, `  ${t.intent}`) : null))
    : [el("li", { class: "empty" }, call.ok ? "No turns yet." : String(call.data.detail || "The call is not available."))]));
  const box = document.getElementById("drill-card");
  if (!card.ok) { box.replaceChildren(el("p", { class: "message" }, card.status === 404 ? (call.ok && call.data.active ? "The call is still in progress: it is scored when it ends." : "This call has no scorecard.") : String(card.data.detail))); }
  else {
    box.replaceChildren(...card.data.parts.map(p => el("div", { class: "part", "data-part": p.part },
      el("p", {}, el("strong", {}, p.part === "bot" ? "Bot part" : "Agent part"), ` · score ${num(p.score, 1)} · `,
        el("span", { class: p.passed === false ? "fail" : p.passed ? "pass" : "na" }, p.passed === false ? (p.critical_failed ? "failed (critical)" : "failed") : p.passed ? "passed" : "n/a"), ` · form ${card.data.form}`),
      el("table", {}, el("tbody", {}, p.results.map(r => el("tr", { "data-criterion": r.criterion },
        el("td", { class: r.verdict }, r.verdict), el("td", {}, el("strong", {}, r.criterion.replaceAll("_", " ")), r.critical ? el("span", { class: "cue" }, " critical") : null,
          el("div", { class: "cue" }, r.explanation),
          r.evidence.length ? el("ul", { class: "evidence" }, r.evidence.map(e => el("li", {}, el("a", { onclick: () => cite(e.turn) }, `#${e.turn}`), ` “${e.quote}”`, e.note ? ` (${e.note})` : ""))) : null),
        el("td", { class: "cue" }, `${r.weight}`))))))));
  }
  panel.scrollIntoView({ behavior: "smooth", block: "start" });
}

function cite(turn) {
  document.querySelectorAll("ol.transcript li.cited").forEach(li => li.classList.remove("cited"));
  const li = document.querySelector(`ol.transcript li[data-turn="${turn}"]`);
  if (li) { li.classList.add("cited"); li.scrollIntoView({ block: "nearest" }); }
}

// --- wiring -----------------------------------------------------------------------------------

function connect() {
  follow("/api/supervisor/stream", {
    board: rows => { board = rows; renderBoard(); },
    alerts: list => { alerts = list; renderAlerts(new Set()); },
    alert: a => {
      alerts = [a, ...alerts.filter(x => x.alert_id !== a.alert_id)];
      renderAlerts(new Set([a.alert_id]));
    },
  });
}

document.querySelectorAll(".ranges button").forEach(b => b.addEventListener("click", () => {
  since = b.dataset.since;
  document.querySelectorAll(".ranges button").forEach(x => x.setAttribute("aria-pressed", String(x === b)));
  loadKpis(); loadQa();
}));
document.getElementById("failed-only").addEventListener("change", loadQa);
document.getElementById("drill-close").addEventListener("click", () => { document.getElementById("drill").hidden = true; });
startPage(() => {
  connect();
  loadKpis(); loadQa();
  setInterval(tick, 1000);
  setInterval(() => { loadKpis(); loadQa(); }, 60000);
});
