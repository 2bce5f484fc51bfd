// The sign-in form: POST /auth/login (JSON), then back to the page that sent us here.
"use strict";
const form = document.getElementById("signin");
const error = document.getElementById("error");

// Only a path on this site: never an open redirect to somewhere else.
function next() {
  const target = new URLSearchParams(location.search).get("next") || "/agent";
  return target.startsWith("/") && !target.startsWith("//") && !target.startsWith("/\\") ? target : "/agent";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  document.getElementById("submit").disabled = true;
  try {
    const res = await fetch("/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: document.getElementById("name").value.trim(),
                             password: document.getElementById("password").value }),
    });
    if (res.ok) { location.assign(next()); return; }
    const data = await res.json().catch(() => ({}));
    error.textContent = typeof data.detail === "string" ? data.detail : `sign-in failed (${res.status})`;
  } catch (err) {
    error.textContent = "cannot reach the server";
  } finally {
    document.getElementById("submit").disabled = false;
  }
});
