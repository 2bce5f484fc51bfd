// Agent assist for one handoff: suggestions follow the call's turns (server-sent events);
// the agent marks each one used or not, which is recorded. assistPanel() fills a container:
// the softphone's panel on /agent, or the whole of /agent/assist?handoff=ID.
// page.js (loaded first) gives el, post, follow and the session.
"use strict";

function assistPanel(container, handoff) {  // returns the stream (close() it when done)
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
    container.replaceChildren(...[...turns.keys()].sort((a, b) => b - a).map(turn =>
      el("section", { class: "turn", "data-turn": turn }, el("h2", {}, `turn ${turn}`),
        turns.get(turn).map(s => el("div", { class: "s", "data-id": s.suggestion_id, "data-kind": s.kind },
          el("span", { class: `kind ${s.kind}` }, s.kind),
          el("span", { class: "body" }, el("span", { class: "title" }, s.title), s.text,
            s.used_by ? el("span", { class: "by" }, ` · ${s.used ? "used" : "not used"} by ${s.used_by}`) : null),
          el("button", { class: "used", "aria-pressed": String(s.used === true), onclick: () => mark(s, true) }, "Used"),
          el("button", { class: "unused", "aria-pressed": String(s.used === false), onclick: () => mark(s, false) }, "Not used"))))));
  }

  return follow(`${base}/stream`, { suggestion: s => { shown.set(s.suggestion_id, s); render(); } });
}

if (document.body.dataset.page === "assist") {
  startPage(() => {
    const handoff = new URLSearchParams(location.search).get("handoff") || "";
    document.getElementById("handoff").textContent = handoff;
    assistPanel(document.getElementById("assist"), handoff);
  });
}
