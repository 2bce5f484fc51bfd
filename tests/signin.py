"""Signing in, for tests of protected routes: real users and tokens in a real store, and
real sign-ins through ``POST /auth/login`` (httpx) or the sign-in page (Chromium)."""

import re

import httpx

from voicebot.auth import Accounts
from voicebot.store import Store

PASSWORD = "correct horse battery staple"
SIGN_IN_PAGE = re.compile(r"/login\?next=")  # where an anonymous browser is sent
TWILIO_TOKEN = "test-twilio-auth-token"  # tests' servers check Twilio signatures with it


def add_user(store: Store, name: str, role: str) -> None:
    Accounts(store).add_user(name, role, PASSWORD)


def bearer(store: Store, role: str, name: str = "tests") -> dict[str, str]:
    """Headers of a fresh machine token with ``role``."""
    token, _ = Accounts(store).create_token(name, role, None)
    return {"Authorization": f"Bearer {token}"}


def signed_in(url: str, name: str, password: str = PASSWORD) -> httpx.Client:
    """A client signed in as ``name`` (session cookie), sending the CSRF token as the
    desktop does."""
    client = httpx.Client(base_url=url, timeout=30)
    response = client.post("/auth/login", json={"name": name, "password": password})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf"]
    return client


def sign_in_page(page, url: str, name: str, next_path: str = "/agent") -> None:
    """Sign in through the sign-in page, as a person does, and land on ``next_path``."""
    page.goto(f"{url}{next_path}")  # anonymous: sent to the sign-in page
    page.wait_for_url(SIGN_IN_PAGE)
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(f"{url}{next_path}")
