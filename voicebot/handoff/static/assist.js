// Agent assist for one handoff (/agent/assist?handoff=ID): suggestions follow the call's
// turns (server-sent events); the agent marks each one used or not, which is recorded.
// page.js (loaded first) gives el, post, follow and the session.
"use strict";
const handoff = new URLSearchParams(location.search).get("handoff") || "";
const base = `/api/handoffs/${encodeURIComponent(handoff)}/assist`;
const shown = new Map();  // suggestion_id -> suggestion

async function mark(s, used) {
  const res = await post(`${base}/${encodeURIComponent(s.suggestion_id)}`, { used });
  if (res.ok) { shown.set(s.suggestion_id, await res.json()); render(); }
}

function render() {
  if (!shown.size) return;
  const turns = new Map();
  for (const s of shown.values()) { if (!turns.has(s.turn)) turns.set(s.turn, []); turns.get(s.turn).push(s); }
  document.getElementById("assist").replaceChildren(...[...turns.keys()].sort((a, b) => b - a).map(turn =>
    el("section", { class: "turn", "data-turn": turn }, el("h2", {}, `turn ${turn}`),
      turns.get(turn).map(s => el("div", { class: "s", "data-id": s.suggestion_id, "data-kind": s.kind },
        el("span", { class: `kind ${s.kind}` }, s.kind),
        el("span", { class: "body" }, el("span", { class: "title" }, s.title), s.text,
          s.used_by ? el("span", { class: "by" }, ` · ${s.used ? "used" : "not used"} by ${s.used_by}`) : null),
        el("button", { class: "used", "aria-pressed": String(s.used === true), onclick: () => mark(s, true) }, "Used"),
        el("button", { class: "unused", "aria-pressed": String(s.used === false), onclick: () => mark(s, false) }, "Not used"))))));
}

startPage(() => {
  document.getElementById("handoff").textContent = handoff;
  follow(`${base}/stream`, { suggestion: s => { shown.set(s.suggestion_id, s); render(); } });
});
