"""Sign-in and access rules through a real uvicorn server on 127.0.0.1, with users, tokens,
sessions and the audit log in a real store (SQLite and PostgreSQL).

The first test walks ``app.routes`` of the app as ``voicebot serve`` builds it: a route
that declares no access rule, or a public one not listed here on purpose, fails it; then
every route is called anonymously and must refuse."""

import asyncio
import json
import re
import time

import httpx
import pytest
import websockets
from fastapi import APIRouter
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from sqlalchemy.exc import DBAPIError

from tests.fakes import NoCalls
from tests.servers import Server
from tests.signin import PASSWORD, TWILIO_TOKEN, add_user, bearer, signed_in
from voicebot.auth import Accounts, audit
from voicebot.errors import StoreError
from voicebot.server import ServerConfig, create_app
from voicebot.server.access import access_of
from voicebot.server.limits import Limits, Rate
from voicebot.server.twilio import signature
from voicebot.store import Store
from voicebot.store.schema import audit_log

SCRAPE = "test-scrape-token"
# Every route open without sign-in, on purpose. A new one must be added here, with its
# reason in its ``public(...)`` rule: that is the review this list forces.
PUBLIC = {"/healthz", "/readyz", "/login", "/login.js", "/auth/login"}
TWILIO = {"/twilio/voice", "/twilio/media", "/twilio/continue", "/twilio/dial"}
WRONG = {"detail": "wrong name or password"}
INVALID = {"detail": "invalid credentials"}


@pytest.fixture
def sqlite_store(tmp_path):
    instance = Store(f"sqlite:///{tmp_path}/auth.db")
    yield instance
    instance.close()


def serve(store, routers=(), **config):
    options = {"twilio_auth_token": TWILIO_TOKEN, "metrics_token": SCRAPE} | config
    app = create_app(NoCalls(), config=ServerConfig(**options), store=store, routers=routers)
    return app, Server(app)


def walk(app):
    """(path, methods, websocket, access rule) of every route, included routers and all."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        websocket = isinstance(route, APIWebSocketRoute)
        yield route.path, sorted(getattr(route, "methods", ())), websocket, access_of(route)


def undeclared(app):
    return [path for path, _, _, access in walk(app) if access is None]


def test_every_route_declares_who_may_call_it_and_refuses_anonymous_callers(sqlite_store):
    app, server = serve(sqlite_store)
    routes = list(walk(app))
    paths = {path for path, *_ in routes}
    # The walk sees the included routers (not only the app's own routes).
    assert {"/agent", "/api/calls/{call_id}/recording", "/ws/call", "/metrics"} <= paths
    assert "/docs" not in paths and "/openapi.json" not in paths  # no anonymous API browser
    assert undeclared(app) == []
    opened = {path for path, _, _, access in routes if not access.roles}
    assert opened == PUBLIC | TWILIO
    assert all(access.why for path, _, _, access in routes if path in opened)

    async def handshake(url):
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url):
                pass
        return refused.value.response.status_code

    try:
        for path, methods, websocket, _ in routes:
            concrete = re.sub(r"\{[a-z_]+\}", "x", path)
            if websocket:
                assert asyncio.run(handshake(server.ws_url + concrete)) == 403, path
                continue
            for method in methods:
                response = httpx.request(method, server.url + concrete, timeout=10)
                status = response.status_code
                if path in PUBLIC:
                    assert status in (200, 422), (method, path, status)  # 422: no body
                elif path in TWILIO:
                    assert status == 403, (method, path, status)  # unsigned
                elif status == 303:
                    assert response.headers["location"] == f"/login?next={concrete}"
                else:
                    assert status == 401, (method, path, status)
                    assert response.json() == {"detail": "sign-in required"}
    finally:
        server.stop()


def test_a_route_without_a_rule_is_refused_even_to_admins(sqlite_store):
    forgotten = APIRouter()

    @forgotten.get("/api/forgotten")
    def leak() -> dict:
        return {"secret": 42}

    add_user(sqlite_store, "root", "admin")
    app, server = serve(sqlite_store, routers=[forgotten])
    try:
        assert undeclared(app) == ["/api/forgotten"]  # what the walk above would report
        root = signed_in(server.url, "root")
        assert root.get("/api/forgotten").status_code == 403
        assert httpx.get(f"{server.url}/api/forgotten").status_code == 403
        root.close()
    finally:
        server.stop()


def cookie_flags(response):
    return {
        part.strip().split("=")[0].lower() for part in response.headers["set-cookie"].split(";")
    }


def test_sign_in_roles_sessions_and_sign_out(store):
    for name, role in [("ana", "agent"), ("sue", "supervisor"), ("root", "admin")]:
        add_user(store, name, role)
    add_user(store, "gone", "admin")
    Accounts(store).set_disabled("gone", True)
    _, server = serve(store)
    login = f"{server.url}/auth/login"
    try:
        # Wrong password, unknown name, disabled user: one answer, nothing to tell them apart.
        for name, password in [
            ("ana", "not the password"),
            ("nobody", PASSWORD),
            ("gone", PASSWORD),
        ]:
            response = httpx.post(login, json={"name": name, "password": password})
            assert (response.status_code, response.json()) == (401, WRONG)
            assert "set-cookie" not in response.headers
        good = httpx.post(login, json={"name": "ana", "password": PASSWORD})
        assert good.status_code == 200 and good.json()["role"] == "agent"
        assert {"httponly", "path", "samesite"} <= cookie_flags(good)
        assert "samesite=lax" in good.headers["set-cookie"].lower()
        assert "secure" not in cookie_flags(good)  # plain http on loopback
        behind_tls = httpx.post(
            login,
            json={"name": "ana", "password": PASSWORD},
            headers={"X-Forwarded-Proto": "https"},  # from a trusted proxy (127.0.0.1)
        )
        assert "secure" in cookie_flags(behind_tls)

        ana, sue, root = (signed_in(server.url, n) for n in ("ana", "sue", "root"))
        assert ana.get("/auth/session").json()["name"] == "ana"
        desk = ana.get("/agent")  # pages may not be framed, and run only their own scripts
        assert desk.status_code == 200 and desk.headers["x-frame-options"] == "DENY"
        policy = desk.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'self';" in policy
        assert ana.get("/api/calls").status_code == 403  # agents see handed-off calls only
        assert sue.get("/api/calls").status_code == 200
        assert ana.get("/api/calls/nope").status_code == 404
        assert sue.get("/metrics").status_code == 403 and root.get("/metrics").status_code == 200
        assert (
            httpx.get(
                f"{server.url}/auth/session", cookies={"voicebot_session": "forged"}
            ).status_code
            == 401
        )

        # A new password or a disabled account signs the user out everywhere at once.
        Accounts(store).set_password("sue", PASSWORD + "!")
        assert sue.get("/auth/session").status_code == 401
        Accounts(store).set_disabled("root", True)
        assert root.get("/metrics").status_code == 401
        # Signing out needs the CSRF token, then the session is gone.
        csrf = ana.headers.pop("X-CSRF-Token")
        assert ana.post("/auth/logout").status_code == 403
        assert ana.post("/auth/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
        assert ana.get("/auth/session").status_code == 401
        for client in (ana, sue, root):
            client.close()
    finally:
        server.stop()
    actions = [(e["actor"], e["action"]) for e in store.list_audit()]
    assert ("anonymous", "sign_in_refused") in actions and ("ana", "signed_in") in actions
    assert actions[-1] == ("ana", "signed_out")


def test_tokens_for_machines_and_the_scrape_token(store):
    accounts = Accounts(store)
    supervisor = bearer(store, "supervisor", "crm")
    agent = bearer(store, "agent")
    expired, _ = accounts.create_token("old", "admin", 0.0)
    revoked, revoked_id = accounts.create_token("leaked", "admin", None)
    accounts.revoke_token(revoked_id)
    _, server = serve(store)
    forged = supervisor["Authorization"][:-4] + "AAAA"
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/api/calls", headers=supervisor).status_code == 200
            assert client.get("/api/calls", headers=agent).status_code == 403
            for header in [
                forged,
                f"Bearer {expired}",
                f"Bearer {revoked}",
                "Bearer vb_000000000000_unknown",
                "Basic YW5hOnBhc3N3b3Jk",
            ]:
                response = client.get("/api/calls", headers={"Authorization": header})
                assert (response.status_code, response.json()) == (401, INVALID), header
            scrape = {"Authorization": f"Bearer {SCRAPE}"}
            assert client.get("/metrics", headers=scrape).status_code == 200
            assert client.get("/api/calls", headers=scrape).status_code == 403
    finally:
        server.stop()


def test_websockets_from_another_site_and_cross_site_sign_in_are_refused(sqlite_store):
    add_user(sqlite_store, "ana", "agent")
    _, server = serve(sqlite_store)
    ana = signed_in(server.url, "ana")
    cookie = {"Cookie": f"voicebot_session={ana.cookies['voicebot_session']}"}

    async def open_call(origin):
        headers = cookie | {"Origin": origin}
        async with websockets.connect(f"{server.ws_url}/ws/call", additional_headers=headers) as ws:
            await ws.send(json.dumps({"type": "dtmf", "digit": "1"}))  # before "start"
            await ws.recv()

    try:
        with pytest.raises(websockets.InvalidStatus) as refused:
            asyncio.run(open_call("http://evil.example"))
        assert refused.value.response.status_code == 403
        with pytest.raises(websockets.ConnectionClosed) as closed:
            asyncio.run(open_call(server.url))  # this site: let in, then the protocol rules
        assert closed.value.rcvd.code == 1008
        foreign = httpx.post(
            f"{server.url}/auth/login",
            json={"name": "ana", "password": PASSWORD},
            headers={"Origin": "http://evil.example"},
        )
        assert foreign.status_code == 403
        form = httpx.post(f"{server.url}/auth/login", data={"name": "ana", "password": PASSWORD})
        assert form.status_code == 422  # a form (what a cross-site page can send) is no JSON
    finally:
        ana.close()
        server.stop()


def refusals(server, kind):
    text = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {SCRAPE}"}, timeout=10
    ).text
    pattern = f'voicebot_refused_total{{kind="{kind}"}} '
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(pattern))


def test_limits_refuse_with_a_reason_and_are_counted(sqlite_store):
    add_user(sqlite_store, "ana", "agent")
    add_user(sqlite_store, "sue", "agent")
    limits = Limits(
        waiting_sockets=2,
        event_streams=1,
        body_bytes=1024,
        sign_in_per_client=Rate(3, 3600.0),
        sign_in_per_name=Rate(2, 3600.0),
        calls_per_client=Rate(2, 3600.0),
    )
    _, server = serve(sqlite_store, limits=limits, public_call=True)
    login = f"{server.url}/auth/login"
    before = {k: refusals(server, k) for k in ("sign_in_rate", "waiting_sockets", "call_rate")}
    before["body_too_large"] = refusals(server, "body_too_large")
    try:
        # Two failures lock the name, even for the right password; others may still try.
        for _ in range(2):
            assert httpx.post(login, json={"name": "ana", "password": "wrong!"}).status_code == 401
        locked = httpx.post(login, json={"name": "ana", "password": PASSWORD})
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
        assert "too many sign-in attempts" in locked.json()["detail"]
        sue = signed_in(server.url, "sue")  # the client's third attempt
        assert httpx.post(login, json={"name": "sue", "password": PASSWORD}).status_code == 429
        big = httpx.post(login, json={"name": "sue", "password": "x" * 2000})
        assert big.status_code == 413

        # Sockets that have not said "start" yet: two may wait; a third makes the one that
        # waited longest leave (told why), so idle sockets never keep a caller out.
        url = f"{server.ws_url}/twilio/media"
        headers = {"X-Twilio-Signature": signature(TWILIO_TOKEN, url, [])}

        async def waiting_then_one_more():
            first = await websockets.connect(url, additional_headers=headers)
            second = await websockets.connect(url, additional_headers=headers)
            third = await websockets.connect(url, additional_headers=headers)
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(first.recv(), 30)
            for ws in (second, third):
                assert ws.close_code is None  # still waiting
                await ws.close()
            return first.close_code, first.close_reason

        code, reason = asyncio.run(waiting_then_one_more())
        assert code == 1013
        assert reason == "too many connections waiting to start a call: this one waited longest"

        # Public browser calls: two from this address, then "try again in ...".
        async def browser_calls():
            closes = []
            for _ in range(3):
                ws = await websockets.connect(f"{server.ws_url}/ws/call")
                try:
                    await ws.send(json.dumps({"type": "stop"}))  # before "start": closed
                    await asyncio.wait_for(ws.recv(), 30)
                except websockets.ConnectionClosed:
                    pass
                closes.append((ws.close_code, ws.close_reason))
            return closes

        *allowed, limited = asyncio.run(browser_calls())
        assert [c for c, _ in allowed] == [1008, 1008] and limited[0] == 1013
        assert re.fullmatch(r"too many calls from this address: try again in \d+ s", limited[1])

        # One desktop may follow the queue; the second is refused until the first leaves.
        with sue.stream("GET", "/api/handoffs/stream") as first:
            lines = first.iter_lines()  # kept: dropping it would close the stream
            assert next(lines) == "event: snapshot"
            refused_stream = sue.get("/api/handoffs/stream")
            assert refused_stream.status_code == 503
            assert "following the queue already" in refused_stream.json()["detail"]
        # Once the server sees it gone (its next poll), its place is free again.
        deadline = time.monotonic() + 60  # hang guard
        while True:
            with sue.stream("GET", "/api/handoffs/stream") as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the stream's place was never given back"
            time.sleep(0.1)
        sue.close()
        after = {k: refusals(server, k) for k in before}
    finally:
        server.stop()
    assert after["sign_in_rate"] - before["sign_in_rate"] == 2
    assert after["waiting_sockets"] - before["waiting_sockets"] == 1
    assert after["call_rate"] - before["call_rate"] == 1
    assert after["body_too_large"] - before["body_too_large"] == 1


def test_the_audit_log_is_append_only_and_filters_by_call(store):
    audit(store, "ana", "viewed", "call", "c1")
    audit(store, "ana", "listened", "recording", "c1")
    audit(store, "bob", "claimed", "handoff", "h1", call_id="c1")
    audit(store, "bob", "closed", "handoff", "h2", {"disposition": "resolved"}, call_id="c2")
    rows = store.list_audit(call_id="c1")
    assert [(r["actor"], r["action"], r["target_id"]) for r in rows] == [
        ("ana", "viewed", "c1"),
        ("ana", "listened", "c1"),
        ("bob", "claimed", "h1"),
    ]
    assert store.list_audit(since=rows[-1]["at"] + 3600) == []
    assert [r["detail"] for r in store.list_audit(call_id="c2")] == [{"disposition": "resolved"}]
    assert (
        len(store.list_audit(limit=2)) == 2 and store.list_audit(limit=2)[-1]["target_id"] == "h2"
    )
    with pytest.raises(ValueError):
        audit(store, "ana", "deleted", "call", "c1")  # type: ignore[arg-type]
    for statement in (
        audit_log.update().values(actor="mallory"),
        audit_log.delete().where(audit_log.c.actor == "ana"),
    ):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.execute(statement)
    assert len(store.list_audit()) == 4
    audit_log.drop(store.engine)
    with pytest.raises(StoreError, match="cannot write the audit log"):  # typed, so callers
        audit(store, "ana", "viewed", "call", "c1")  # that show call data can refuse
