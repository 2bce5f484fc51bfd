// What every signed-in page shares (loaded before the page's own script): elements built
// safely (text is appended, never parsed as HTML), the session (who is signed in, the CSRF
// token changes carry), signing out, and following a server-sent event stream with the
// header's connection indicator (#conn); and what handoff reasons are called.
"use strict";
const session = { name: null, role: null, csrf: null };
const REASONS = { caller_request: "asked for a person", low_confidence: "bot unsure",
                  repeated_failure: "stuck", negative_sentiment: "upset caller" };

function signIn() { location.assign("/login?next=" + encodeURIComponent(location.pathname)); }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) if (c != null) node.append(c);  // append() escapes text
  return node;
}

async function post(url, body) {
  const res = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": session.csrf }, body: JSON.stringify(body) });
  if (res.status === 401) signIn();
  return res;
}

function follow(url, handlers) {  // handlers: event name -> function(data); returns { close() }
  const conn = document.getElementById("conn");
  const stream = { source: null, closed: false, close() { this.closed = true; if (this.source) this.source.close(); } };
  const open = () => {
    const source = stream.source = new EventSource(url);
    for (const [name, handle] of Object.entries(handlers)) source.addEventListener(name, e => handle(JSON.parse(e.data)));
    source.onopen = () => { conn.className = "live"; conn.textContent = "live"; };
    source.onerror = () => {  // EventSource retries by itself, unless the server refused it
      if (stream.closed) return;
      conn.className = "down"; conn.textContent = "reconnecting…";
      if (source.readyState === EventSource.CLOSED) setTimeout(() => fetch("/auth/session").then(r => (r.ok ? open() : signIn())), 2000);
    };
  };
  open();
  return stream;
}

async function startPage(ready) {  // once signed in: the header, sign-out, then the page
  const res = await fetch("/auth/session");
  if (!res.ok) { signIn(); return; }
  Object.assign(session, await res.json());
  document.getElementById("me").textContent = `${session.name} (${session.role})`;
  document.getElementById("signout").addEventListener("click", async () => { await post("/auth/logout", {}); signIn(); });
  ready();
}
