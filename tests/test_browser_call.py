"""A browser call end to end: headless Chromium (Debian's /usr/bin/chromium) opens ``/call``
on a real uvicorn server, its microphone is a WAV file, and the page must show what the
caller said, the intent, and play the bot's voice. The page is behind sign-in (staff trying
the bot); with ``public_call`` anyone may call, and the caller ID they claim is not used."""

import asyncio
import json

import httpx
import numpy as np
import pytest
import soundfile as sf
import websockets
from playwright.sync_api import sync_playwright

from tests.browsers import WAIT_MS, launch
from tests.conftest import silence
from tests.servers import Server
from tests.signin import add_user, bearer, sign_in_page
from voicebot.server import ServerConfig, create_app
from voicebot.store import Store

pytestmark = pytest.mark.e2e


def test_browser_call_shows_the_transcript_and_plays_the_bot(bot, caller_audio, tmp_path):
    mic = tmp_path / "caller.wav"
    # Long enough for partial transcripts on a busy machine (they yield to finals).
    speech = caller_audio(
        "hi I lost my card yesterday, I think it fell out of my bag on the train home",
        line="linear",
    )
    audio = np.concatenate([silence(11.0), speech, silence(6.0)])  # spoken after the greeting
    sf.write(mic, audio, 16000, subtype="PCM_16")
    store = Store(f"sqlite:///{tmp_path}/auth.db")
    add_user(store, "ana", "agent")
    api = bearer(store, "supervisor")
    server = Server(create_app(bot, config=ServerConfig(max_calls=1), store=store))
    try:
        with sync_playwright() as p:
            browser = launch(p, microphone=mic)
            try:
                page = browser.new_page()
                sign_in_page(page, server.url, "ana", "/call")
                page.fill("#caller", "+15551230001")
                page.click("#start")
                page.wait_for_selector("#transcript .caller", timeout=WAIT_MS)
                page.locator("#transcript .bot").nth(1).wait_for(timeout=WAIT_MS)
                caller = page.inner_text("#transcript .caller")
                intent = page.inner_text("#intent")
                replies = page.locator("#transcript .bot").all_inner_texts()
                page.wait_for_timeout(1500)  # some of the answer plays
                heard = page.evaluate("window.voicebot")
                page.click("#hangup")
                # A function, not an expression: the page's CSP forbids eval of strings.
                page.wait_for_function("() => window.voicebot.closed !== null", timeout=WAIT_MS)
                closed = page.evaluate("window.voicebot.closed")
            finally:
                browser.close()
        calls = httpx.get(f"{server.url}/api/calls", headers=api).json()
    finally:
        server.stop()
        store.close()
    assert "lost my car" in caller.lower()
    assert intent.startswith("report_lost_or_stolen_card")
    assert replies[0].startswith("Bot: This call may be recorded. Thank you for calling")
    assert "ZIP code" in replies[1]
    assert heard["botSamples"] > 16000 * 5 and heard["botPeak"] > 3000  # greeting + answer
    words = [e for e in heard["events"] if e["type"] in ("partial", "final")]
    assert words[-1]["type"] == "final"
    # Partial transcripts reached the page while the caller was still talking.
    first_final = next(i for i, e in enumerate(words) if e["type"] == "final")
    assert any(e["type"] == "partial" and e["text"] for e in words[:first_final])
    assert closed == {"code": 1000, "reason": "caller hung up"}
    [call] = [c for c in calls if c["caller_id"] == "+15551230001"]
    assert call["ended_by"] == "caller"


def test_public_calls_need_no_sign_in_and_their_caller_id_identifies_nobody(bot, tmp_path):
    store = Store(f"sqlite:///{tmp_path}/auth.db")
    api = bearer(store, "supervisor")
    config = ServerConfig(max_calls=1, public_call=True)
    server = Server(create_app(bot, config=config, store=store))

    async def call():
        async with websockets.connect(f"{server.ws_url}/ws/call") as ws:
            start = {"type": "start", "sampleRate": 16000, "callerId": "+15551230001"}
            await ws.send(json.dumps(start))
            for _ in range(50):  # a second of silence from the microphone, in real time:
                await ws.send(np.zeros(320, "<i2").tobytes())  # an unsigned line must prove
                await asyncio.sleep(0.02)  # it is one before it takes a call slot
            await ws.send(json.dumps({"type": "stop"}))
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 60)
            return ws.close_code, ws.close_reason

    try:
        page = httpx.get(f"{server.url}/call")
        closed = asyncio.run(call())
        [row] = httpx.get(f"{server.url}/api/calls", headers=api).json()
    finally:
        server.stop()
        store.close()
    assert (
        page.status_code == 200
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    assert closed == (1000, "caller hung up")
    assert row["caller_id"] is None and row["ended_by"] == "caller"
