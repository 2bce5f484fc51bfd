"""Every route's access rule, checked in one place before the route runs; sign-in and
sign-out; the headers every page and response carries.

A route declares who may use it with ``@allow(...)``: ``signed_in(role)`` (a user's session
cookie or a machine's bearer token with that role or above), ``METRICS`` (admins or the
scrape token), ``TWILIO`` (the route checks Twilio's signature itself) or
``public(why)``. ``Gate`` is a dependency of the whole app: it finds the rule of the route
being called and refuses before the route's code runs. A route that declares nothing is
refused to everyone (fail closed), and ``tests/test_access.py`` walks ``app.routes`` so that
it fails the build as well.

Browser sessions are HttpOnly, SameSite=Lax cookies (Secure when the request came over TLS
or ``--public-url`` is https). A state-changing request made with the cookie must carry the
session's CSRF token in ``X-CSRF-Token``; a WebSocket opened from a page of another site is
refused (its ``Origin``). Bearer tokens carry no ambient authority, so they need neither.
"""

import asyncio
import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.requests import HTTPConnection
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import WebSocketException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voicebot.auth import SCRAPE, Accounts, Principal, Role, audit, roles_from
from voicebot.server.limits import Limits, RateLimiter, refused, wait_text

log = logging.getLogger(__name__)

COOKIE = "voicebot_session"
CSRF_HEADER = "X-CSRF-Token"
STATIC = Path(__file__).parent / "static"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Access:
    """Who may call a route: ``roles`` (empty: anyone, and ``why`` says why)."""

    roles: frozenset[str]
    why: str = ""
    page: bool = False  # an anonymous browser is sent to the sign-in page
    twilio: bool = False  # open at the gate; the route checks X-Twilio-Signature


def signed_in(role: Role, *, page: bool = False) -> Access:
    return Access(roles_from(role), page=page)


def public(why: str) -> Access:
    return Access(frozenset(), why)


METRICS = Access(roles_from("admin") | {SCRAPE})
TWILIO = Access(frozenset(), "Twilio's requests: the route checks X-Twilio-Signature", twilio=True)

F = TypeVar("F", bound=Callable[..., Any])


def allow(access: Access) -> Callable[[F], F]:
    """Declare a route's access rule (put it under the route decorator)."""

    def mark(endpoint: F) -> F:
        endpoint.access = access  # type: ignore[attr-defined]
        return endpoint

    return mark


def access_of(route: object) -> Access | None:
    return getattr(getattr(route, "endpoint", None), "access", None)


def principal(conn: HTTPConnection) -> Principal | None:
    """The caller of this request as the gate found it (None: anonymous, on a public route)."""
    return getattr(conn.state, "principal", None)


def signed_in_principal(conn: HTTPConnection) -> Principal:
    """For routes behind ``signed_in``: the gate guarantees there is one."""
    found = principal(conn)
    if found is None:  # a public route asked for a principal: a bug, refuse
        raise HTTPException(401, "sign-in required")
    return found


def same_origin(conn: HTTPConnection, public_url: str | None) -> bool:
    """Whether the request's ``Origin`` is this server (as the browser or the proxy sees it)."""
    origin = conn.headers.get("origin")
    if not origin:
        return False
    allowed = {conn.headers.get("host", "")}
    if public_url:
        allowed.add(urlsplit(public_url).netloc)
    return urlsplit(origin).netloc in allowed


def client_key(conn: HTTPConnection) -> str:
    """The client's address (the proxy's X-Forwarded-For when uvicorn trusts the proxy)."""
    return conn.client.host if conn.client else "unknown"


class Gate:
    """The app-wide dependency that enforces each route's ``Access``."""

    def __init__(
        self, accounts: Accounts | None, scrape_token: str | None, public_url: str | None
    ) -> None:
        self.accounts = accounts
        self.scrape_token = scrape_token
        self.public_url = public_url

    async def __call__(self, conn: HTTPConnection) -> None:
        websocket = conn.scope["type"] == "websocket"
        access = access_of(conn.scope.get("route"))
        if access is None:
            log.error("route %s declares no access rule: refused", conn.url.path)
            _refuse(websocket, 403, "forbidden", "no_rule")
        conn.state.principal = None
        conn.state.gate = self
        if access.twilio:
            return
        try:
            found = await self._identify(conn, websocket)
        except SQLAlchemyError as exc:
            log.error("sign-in check failed: %s", exc)
            raise (
                WebSocketException(1011, "sign-in unavailable")
                if websocket
                else HTTPException(503, "sign-in unavailable")
            ) from exc
        conn.state.principal = found
        if access.roles and found is None:
            if access.page and conn.scope.get("method") == "GET":
                target = "/login?next=" + quote(conn.url.path)
                raise HTTPException(303, "sign-in required", headers={"Location": target})
            _refuse(websocket, 401, "sign-in required", "sign_in_required")
        if access.roles and found is not None and not found.may(access.roles):
            _refuse(websocket, 403, "forbidden: your role may not do this", "forbidden")
        if websocket and conn.headers.get("origin") and not same_origin(conn, self.public_url):
            _refuse(websocket, 403, "WebSocket from another site refused", "cross_origin")
        if (
            not websocket
            and found is not None
            and found.kind == "user"
            and conn.scope["method"] not in _SAFE_METHODS
        ):
            sent = conn.headers.get(CSRF_HEADER, "")
            if not (found.csrf and hmac.compare_digest(sent.encode(), found.csrf.encode())):
                _refuse(websocket, 403, f"missing or wrong {CSRF_HEADER}", "csrf")

    async def still_signed_in(self, conn: HTTPConnection) -> bool:
        """For long-lived requests (event streams): whether their credentials still hold,
        e.g. not signed out, disabled or revoked since the request began."""
        try:
            return await self._identify(conn, False) is not None
        except (HTTPException, SQLAlchemyError):
            return False

    async def _identify(self, conn: HTTPConnection, websocket: bool) -> Principal | None:
        header = conn.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            value = value.strip()
            if self.scrape_token and hmac.compare_digest(
                value.encode(), self.scrape_token.encode()
            ):
                return Principal("metrics", SCRAPE, "scrape")
            found = None
            if scheme.lower() == "bearer" and value and self.accounts is not None:
                found = await asyncio.to_thread(self.accounts.token, value)
            if found is None:  # one answer for forged, expired and revoked alike
                _refuse(websocket, 401, "invalid credentials", "bad_token")
            return found
        cookie = conn.cookies.get(COOKIE)
        if cookie and self.accounts is not None:
            return await asyncio.to_thread(self.accounts.session, cookie)
        return None


def _refuse(websocket: bool, status: int, detail: str, kind: str) -> NoReturn:
    refused(kind)
    if websocket:  # before the handshake completes: the client sees HTTP 403
        raise WebSocketException(1008, detail)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    raise HTTPException(status, detail, headers=headers)


# --- pages ----------------------------------------------------------------------------------

_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


def page_csp(html: str) -> str:
    """Scripts only from this server's own files; inline styles only by their hash."""
    styles = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _STYLE.findall(html)
    )
    return (
        "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self'; "
        f"media-src 'self'; style-src 'self' {styles}; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    )


def add_page(router: APIRouter, path: str, file: Path, access: Access) -> None:
    """Serve an HTML page with its CSP, or a script or stylesheet, at ``path`` under
    ``access``."""
    if file.suffix == ".html":
        html = file.read_text()
        headers = {"Content-Security-Policy": page_csp(html), "Cache-Control": "no-store"}

        def serve() -> Response:
            return Response(html, media_type="text/html", headers=headers)

    else:
        media_type = "text/css" if file.suffix == ".css" else "text/javascript"

        def serve() -> Response:
            return FileResponse(file, media_type=media_type)

    router.add_api_route(path, allow(access)(serve), methods=["GET"], include_in_schema=False)


class SecurityHeaders:
    """Headers every HTTP response gets (pages set their own CSP first); API answers are
    never cached. Also counts the bodies refused as too large (413, FastAPI's limit)."""

    _HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 413:
                    refused("body_too_large")
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = list(self._HEADERS)
                if scope["path"].startswith("/api/"):
                    extra.append((b"cache-control", b"no-store"))
                headers += [(n, v) for n, v in extra if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


# --- sign-in --------------------------------------------------------------------------------


class SignIn(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


def auth_router(accounts: Accounts | None, limits: Limits, public_url: str | None) -> APIRouter:
    """``/login`` (the page), ``POST /auth/login``, ``GET /auth/session``, ``POST /auth/logout``."""
    router = APIRouter()
    add_page(router, "/login", STATIC / "login.html", public("the sign-in page"))
    add_page(router, "/login.js", STATIC / "login.js", public("the sign-in page's script"))
    add_page(router, "/page.js", STATIC / "page.js", signed_in("agent"))  # signed-in pages'
    per_client = RateLimiter("sign_in_rate", limits.sign_in_per_client)
    per_name = RateLimiter("sign_in_rate", limits.sign_in_per_name)

    @router.post("/auth/login")
    @allow(public("signing in: rate-limited per client and per name"))
    async def login(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        # A JSON body (a cross-site form cannot send one) from this site's own page.
        if request.headers.get("origin") and not same_origin(request, public_url):
            refused("cross_origin")
            raise HTTPException(403, "sign-in from another site refused")
        if accounts is None:
            raise HTTPException(503, "sign-in needs the database (this server runs --no-db)")
        client = client_key(request)
        wait = per_client.retry_after(client) or per_name.retry_after(body.name)
        if wait:
            refused("sign_in_rate")
            raise HTTPException(
                429,
                f"too many sign-in attempts: {wait_text(wait)}",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        per_client.spend(client)
        result = await asyncio.to_thread(accounts.sign_in, body.name, body.password)
        if result is None:
            per_name.spend(body.name)
            refused("sign_in_failed")
            await asyncio.to_thread(_audit_refusal, accounts, body.name)
            raise HTTPException(401, "wrong name or password")
        who, cookie = result
        await asyncio.to_thread(audit, accounts.store, who, "signed_in", "user", who.name)
        secure = request.url.scheme == "https" or (public_url or "").startswith("https://")
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(accounts.policy.ttl_s),
            httponly=True,
            samesite="lax",
            secure=secure,
            path="/",
        )
        return {"name": who.name, "role": who.role, "csrf": who.csrf}

    @router.get("/auth/session")
    @allow(signed_in("agent"))
    def session(request: Request) -> dict[str, Any]:
        """Who is signed in, and the CSRF token the page sends with its changes."""
        who = signed_in_principal(request)
        return {"name": who.name, "role": who.role, "csrf": who.csrf}

    @router.post("/auth/logout")
    @allow(signed_in("agent"))
    def logout(request: Request, response: Response) -> dict[str, str]:
        who = signed_in_principal(request)
        if accounts is not None:
            accounts.sign_out(who)
            audit(accounts.store, who, "signed_out", "user", who.name)
        response.delete_cookie(COOKIE, path="/")
        return {"signed_out": who.name}

    return router


def _audit_refusal(accounts: Accounts, name: str) -> None:
    """A failed sign-in names the account only if there is one: people type passwords
    into the name field, and those must not land in the log."""
    known = accounts.store.get_user(name) is not None
    audit(accounts.store, "anonymous", "sign_in_refused", "user", name if known else "?")
